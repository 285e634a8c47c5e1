"""Candidate layers for compensation (CorrectNet, Sec. IV-C, Fig. 9).

Variation is injected only into layers ``i..L`` (0-based ``i..L-1`` here) for
decreasing ``i``. The first ``i`` at which the accuracy falls below
``threshold * clean`` (95 % by default) marks the candidates: layers ``0..i``.
Layers after ``i`` tolerate their own variation; the error that matters
enters at or before ``i``, so compensators go there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from correctnet.errors import CandidateError

__all__ = ["CandidateError", "CandidateResult", "select_candidates", "monte_carlo_tail_accuracy"]



@dataclass
class CandidateResult:
    """Outcome of :func:`select_candidates`.

    Attributes:
        layers: Layer names in definition order.
        clean: Clean (variation-free) accuracy, fraction.
        threshold: Fraction of ``clean`` below which the accuracy counts as dropped.
        curve: ``{i: (mean, std)}``, accuracy with variation in layers ``i..L-1``.
        drop_index: First ``i`` (scanning down from ``L-1``) with mean < threshold * clean,
            or ``None`` when even all layers varied stay above it.
        candidates: ``layers[:drop_index + 1]`` (empty when ``drop_index`` is None).
    """

    layers: list[str]
    clean: float
    threshold: float
    curve: dict[int, tuple[float, float]] = field(default_factory=dict)
    drop_index: int | None = None
    candidates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-safe dict (curve keys become strings)."""
        return {
            "layers": list(self.layers),
            "clean": self.clean,
            "threshold": self.threshold,
            "curve": {str(i): [m, s] for i, (m, s) in self.curve.items()},
            "drop_index": self.drop_index,
            "candidates": list(self.candidates),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CandidateResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            layers=list(d["layers"]),
            clean=float(d["clean"]),
            threshold=float(d["threshold"]),
            curve={int(i): (float(v[0]), float(v[1])) for i, v in d["curve"].items()},
            drop_index=d["drop_index"],
            candidates=list(d["candidates"]),
        )


def select_candidates(
    layers: Sequence[str],
    tail_accuracy: Callable[[int], tuple[float, float]],
    clean: float,
    *,
    threshold: float = 0.95,
    full_curve: bool = True,
) -> CandidateResult:
    """Select candidate layers by injecting variation into layers ``i..L-1``.

    Args:
        layers: Analog layer names in definition order (``L`` of them).
        tail_accuracy: ``i -> (mean, std)``, accuracy (fraction) with variation only in
            layers ``i..L-1`` (e.g. :func:`monte_carlo_tail_accuracy`).
        clean: Clean accuracy (fraction in [0, 1]).
        threshold: Drop criterion: mean < ``threshold * clean``. Paper: 0.95.
        full_curve: Keep scanning down to ``i = 0`` after the drop (for the Fig. 9 plot).

    Returns:
        A :class:`CandidateResult`.

    Raises:
        CandidateError: for an empty layer list, clean outside [0, 1] or threshold outside (0, 1].
    """
    if not layers:
        raise CandidateError("layers must name at least one analog layer, got none")
    if not 0.0 <= clean <= 1.0:
        raise CandidateError(f"clean accuracy must be a fraction in [0, 1], got {clean}")
    if not 0.0 < threshold <= 1.0:
        raise CandidateError(f"threshold must be in (0, 1], got {threshold}")
    result = CandidateResult(layers=list(layers), clean=float(clean), threshold=float(threshold))
    for i in range(len(layers) - 1, -1, -1):
        mean, std = tail_accuracy(i)
        result.curve[i] = (float(mean), float(std))
        if result.drop_index is None and mean < threshold * clean:
            result.drop_index = i
            result.candidates = list(layers[: i + 1])
            if not full_curve:
                break
    return result


def monte_carlo_tail_accuracy(
    analog, data, *, samples: int, seed: int = 0, progress: bool = False
) -> Callable[[int], tuple[float, float]]:
    """Return ``i -> (mean, std)`` running :func:`mapping.run_monte_carlo` on layers ``i..L-1``.

    Args:
        analog: A network converted with :func:`mapping.convert_to_crossbar`.
        data: Iterable of ``(inputs, labels)`` batches.
        samples: Monte-Carlo samples per point.
        seed: Base seed (the same for every ``i``: common random numbers).
        progress: Show progress bars.
    """
    from mapping import crossbar_layers, run_monte_carlo

    n_layers = len(crossbar_layers(analog))

    def tail(i: int) -> tuple[float, float]:
        res = run_monte_carlo(
            analog, data, samples=samples, seed=seed, layers=range(i, n_layers), progress=progress
        )
        return float(res.mean), float(res.std)

    return tail
