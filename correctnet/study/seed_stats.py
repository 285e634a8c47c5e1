"""Statistics over training seeds and device samples, as the reproduce report states them.

A network variant trained with ``N`` seeds and evaluated on the same ``S`` device samples per
seed has ``N x S`` accuracies ``a[k][s]``. The report gives

- ``mean`` / ``std``: over all ``N x S`` accuracies (training and device spread together);
- ``seed_means``: ``mean_s a[k][s]`` per seed (the spread between training runs).

A comparison of two variants A and B is *paired*: the same seed index and the same device
samples. Its difference ``d_k = mean(A_k) - mean(B_k)`` has the uncertainty of the seeds,
``sem = std(d, ddof=1) / sqrt(N)`` and a 95 % interval ``mean(d) +- t_{0.975, N-1} sem``.
With one seed the pairing is over device samples instead (``d_s = A[0][s] - B[0][s]``), which
says only how sure the difference is for *this* training run; ``over`` names which it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from correctnet.errors import SeedStatsError

__all__ = ["SeedStatsError", "pool_seeds", "paired_difference"]


def _matrix(per_seed: Sequence[Sequence[float]], what: str) -> np.ndarray:
    rows = [list(r) for r in per_seed]
    if not rows or any(not r for r in rows):
        raise SeedStatsError(f"{what}: need at least one seed with at least one accuracy")
    if len({len(r) for r in rows}) != 1:
        raise SeedStatsError(f"{what}: every seed needs the same number of device samples, got "
                             f"{[len(r) for r in rows]}")
    return np.asarray(rows, dtype=np.float64)


def pool_seeds(per_seed: Sequence[Sequence[float]]) -> dict:
    """Mean and spread over all seeds' device samples.

    Args:
        per_seed: ``[[accuracy per device sample] per seed]`` (fractions), equal lengths.

    Returns:
        ``{"mean", "std", "seed_means", "seed_std"}``: pooled mean and population std over
        every accuracy, each seed's mean, and the std (ddof 1, 0 for one seed) of those means.

    Raises:
        SeedStatsError: no seeds, an empty seed, or seeds with different sample counts.
    """
    a = _matrix(per_seed, "pool_seeds")
    means = a.mean(axis=1)
    return {"mean": float(a.mean()), "std": float(a.std()),
            "seed_means": [float(m) for m in means],
            "seed_std": float(means.std(ddof=1)) if len(means) > 1 else 0.0}


def paired_difference(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> dict:
    """The paired difference A - B with its uncertainty (see the module docstring).

    Args:
        a: Per-seed accuracies of variant A (``[[per device sample] per seed]``).
        b: Those of variant B, same seeds and the same device samples.

    Returns:
        ``{"mean", "sem", "ci95", "over", "n", "per_seed"}``: mean difference (fraction),
        its standard error, the 95 % interval ``[lo, hi]`` (Student t), ``"seeds"`` or
        ``"device samples"``, the number of pairs, and each seed's difference.

    Raises:
        SeedStatsError: bad shapes, or A and B with different seed / sample counts.
    """
    ma, mb = _matrix(a, "paired_difference A"), _matrix(b, "paired_difference B")
    if ma.shape != mb.shape:
        raise SeedStatsError(f"paired_difference: A has {ma.shape[0]} seeds x {ma.shape[1]} "
                             f"samples, B {mb.shape[0]} x {mb.shape[1]}; pairs need equal counts")
    per_seed = ma.mean(axis=1) - mb.mean(axis=1)
    if len(per_seed) > 1:
        d, over = per_seed, "seeds"
    else:
        d, over = ma[0] - mb[0], "device samples"
    n = len(d)
    mean = float(d.mean())
    sem = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * sem) if n > 1 else 0.0
    return {"mean": mean, "sem": sem, "ci95": [mean - half, mean + half], "over": over,
            "n": n, "per_seed": [float(x) for x in per_seed]}
