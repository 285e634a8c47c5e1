"""Index arithmetic of a sliding window over an unpadded input (the correction's pool).

:func:`_col_range` is the range of output columns whose tap falls inside the input: the
correction's average pool (:mod:`mapping.correction_kernels`) reads the unpadded conv input
and skips the taps outside it. (The conv kernels' own fields read a zero-padded copy,
:mod:`mapping.field_kernels`.)
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def _col_range(c0, sw, n_w, wo):  # pragma: no cover - compiled
    """Output columns ``[lo, hi)`` whose tap ``c0 + ow * sw`` lies inside ``[0, n_w)``."""
    lo = 0 if c0 >= 0 else (sw - 1 - c0) // sw
    hi = (n_w - 1 - c0) // sw + 1
    lo = min(lo, wo)
    return lo, min(max(hi, lo), wo)
