"""The networks a study trains and compares: one enum, one spelling per variant.

A variant's *name* (``Variant.VARIATION_AWARE.value == "variation_aware"``) is what the study
writes: checkpoint file stems (``variation_aware.pt``), ``report.json`` keys, ``Preset.base``
and ``reproduce --base``. Its *training method* (:attr:`Variant.method`, ``"variation-aware"``)
is the value of ``TrainConfig.method`` and ``correctnet train --method``, as stored in every
checkpoint's ``meta`` since the first release; it is kept so that existing checkpoints and run
folders still load and resume. :meth:`Variant.parse` takes either spelling, so each command
line option accepts both.
"""

from __future__ import annotations

import enum

from correctnet.errors import UsageError

__all__ = ["Variant", "VARIANTS", "METHODS"]


class Variant(str, enum.Enum):
    """One of the study's networks (a ``str``: ``Variant.PLAIN == "plain"``)."""

    PLAIN = "plain"
    """Cross-entropy only (the paper's "unregularized")."""
    LIPSCHITZ = "lipschitz"
    """Lipschitz-regularized: orthogonality penalty or hard constraint (eq. 9-11)."""
    VARIATION_AWARE = "variation_aware"
    """Trained with fresh ``w * exp(theta)`` in every batch."""

    @property
    def method(self) -> str:
        """``TrainConfig.method`` / ``correctnet train --method`` of this variant."""
        return self.value.replace("_", "-")

    @property
    def label(self) -> str:
        """Human name for figures and tables."""
        return {"plain": "unregularized", "lipschitz": "Lipschitz",
                "variation_aware": "variation-aware"}[self.value]

    @classmethod
    def parse(cls, name: str | Variant) -> Variant:
        """The variant spelled ``name`` (``"variation_aware"`` or ``"variation-aware"``).

        Raises:
            UsageError: not a variant; the message lists the valid names.
        """
        if isinstance(name, cls):
            return name
        key = str(name).strip().lower().replace("-", "_")
        for variant in cls:
            if variant.value == key:
                return variant
        raise UsageError(f"unknown network variant {name!r}; valid: "
                         f"{', '.join(v.value for v in cls)} (or with '-')")

    def __str__(self) -> str:
        return self.value


#: Variant names in the study's order (checkpoint file stem = name).
VARIANTS: tuple[str, ...] = tuple(v.value for v in Variant)
#: Training methods in the same order (``TrainConfig.method`` values).
METHODS: tuple[str, ...] = tuple(v.method for v in Variant)
