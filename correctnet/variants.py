"""The networks a reproduce run trains and compares, and the training method of each."""

from __future__ import annotations

__all__ = ["VARIANTS", "TRAIN_METHOD"]

#: Networks compared in the report (checkpoint file stem = name).
VARIANTS: tuple[str, ...] = ("plain", "lipschitz", "variation_aware")
#: ``correctnet train --method`` of each variant.
TRAIN_METHOD: dict[str, str] = {"plain": "plain", "lipschitz": "lipschitz",
                                "variation_aware": "variation-aware"}
