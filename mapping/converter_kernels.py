"""The crossbar's converters outside the fused conv loops: one ADC rule, row-wise DAC and ADC.

:func:`_adc` is the ADC of one bit-line sum (inlined into the conv kernels of
:mod:`mapping.kernels` and into :func:`adc_rows`). Linear layers of the Monte-Carlo fast path
run :func:`dac_rows`, a BLAS GEMM per row tile (:func:`mapping.fastpath.fused_forward`) and
:func:`adc_rows`, xbar's rules bit for bit.

``periph``: float64 ``(4,)`` = ``(dac_mode, dac_levels, input_range, adc_levels)``, as the
conv kernels take it (:mod:`mapping.kernels`): ``dac_mode`` 1 = inputs scaled per vector by
``s``, 0 = raw; ``dac_levels`` ``2**(bits-1) - 1`` of the DAC, 0 for an unrounded ``x / s``;
``input_range`` a fixed DAC full scale, <= 0 for the per-vector ``max |x|``; ``adc_levels``
``2**(bits-1) - 1`` of the ADC, 0 for ideal.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from xbar.kernels import dac_code

#: Input vectors per parallel work item of :func:`dac_rows` and :func:`adc_rows`.
_ROWS = 64


@njit(cache=True, inline="always")
def _adc(acc, gain, step, adc_levels):  # pragma: no cover - compiled
    """One bit-line sum through the ADC: ``clip(rint(acc * gain), -L, L) * step`` (float64)."""
    if adc_levels > 0:
        return min(max(np.rint(np.float64(acc) * gain), -adc_levels), adc_levels) * step
    return np.float64(acc) * step


@njit(parallel=True, cache=True)
def dac_rows(x, periph, codes, scales):  # pragma: no cover - compiled
    """DAC of a batch of input vectors (xbar's rule), for the BLAS path of linear layers.

    Parallel over blocks of :data:`_ROWS` vectors (each vector's codes as xbar's).

    Args:
        x: float32 ``(N, K)`` inputs.
        periph: float64 ``(4,)`` converter constants (module docstring).
        codes: float32 ``(N, K)`` output: integer codes (or ``x / s``, or ``x`` if mode 0).
        scales: float64 ``(N,)`` output: ``s`` per vector (1 if mode 0).
    """
    n_n, n_k = x.shape
    dac_mode, dac_levels, input_range = periph[0], periph[1], periph[2]
    for blk in prange((n_n + _ROWS - 1) // _ROWS):
        for b in range(blk * _ROWS, min(n_n, (blk + 1) * _ROWS)):
            if dac_mode <= 0:
                scales[b] = 1.0
                for k in range(n_k):
                    codes[b, k] = x[b, k]
                continue
            s = input_range
            if s <= 0:
                s = 0.0
                for k in range(n_k):
                    s = max(s, abs(np.float64(x[b, k])))
            scales[b] = s
            for k in range(n_k):
                codes[b, k] = (np.float32(dac_code(np.float64(x[b, k]), s, dac_levels))
                               if s > 0 else 0.0)


@njit(parallel=True, cache=True)
def adc_rows(p, gain, step, adc_levels, scales, bias, out):  # pragma: no cover - compiled
    """ADC per tile column, digital sum over row tiles, rescale and bias (xbar's rule).

    ``out[n, o] = s_n * sum_t step[t, o] * clip(rint(p[t, n, o] * gain[t, o]), -L, L) + b[o]``
    (``adc_levels == 0``: no rounding or clipping, ``gain`` ignored). The sum over ``t``
    ascending per output, vectorised over outputs, parallel over blocks of :data:`_ROWS`
    vectors.

    Args:
        p: float32 ``(n_row_tiles, N, O)`` bit-line sums.
        gain: float64 ``(n_row_tiles, O)`` ADC gain.
        step: float64 ``(n_row_tiles, O)`` ADC step.
        adc_levels: ``2**(bits-1) - 1`` (float) or 0 for ideal.
        scales: float64 ``(N,)`` DAC scales.
        bias: float32 ``(O,)``.
        out: float32 ``(N, O)`` output.
    """
    n_t, n_n, n_o = p.shape
    for blk in prange((n_n + _ROWS - 1) // _ROWS):
        acc = np.empty(n_o)
        for n in range(blk * _ROWS, min(n_n, (blk + 1) * _ROWS)):
            acc[:] = 0.0
            for t in range(n_t):
                pt, gt, st = p[t, n], gain[t], step[t]
                for o in range(n_o):
                    acc[o] += _adc(pt[o], gt[o], st[o], adc_levels)
            s = scales[n]
            for o in range(n_o):
                out[n, o] = np.float32(acc[o] * s + bias[o])
