"""Numba kernels of the Monte-Carlo fast path (fused im2col + DAC + tiled MAC + ADC).

One kernel serves convolutions and fully connected layers (a linear layer is a 1x1
convolution over a 1x1 image). It never materialises the im2col matrix: for every output
position it gathers the receptive field, DAC-quantises it once, and multiplies it with the
effective weights of ``S`` device samples (the Monte-Carlo samples share the input's
quantisation; zero input codes are skipped). Maths as in :mod:`mapping.torch_ops`.

Kernels take contiguous arrays and scalars only; the validating wrapper is
:func:`mapping.fastpath.fused_forward`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def analog_conv_forward(x, wt, bounds, gain, step, bias, dac_mode, dac_levels, input_range,
                        adc_levels, kh, kw, sh, sw, dh, dw, out):  # pragma: no cover - compiled
    """Fused analog convolution for ``S`` device samples.

    Args:
        x: Padded input, float32 ``(B, C, Hp, Wp)``.
        wt: Effective weights, transposed, float32 ``(S, K, O)``, ``K = C*kh*kw`` in
            ``(c, i, j)`` order (torch ``weight.flatten(1)``).
        bounds: Row-tile boundaries along ``K``, int64 ``(n_row_tiles + 1,)``.
        gain: float64 ``(n_row_tiles, O)``: ``L_a / (F * L_d)`` (0 where ``F == 0``) with an
            ADC (``L_d = 1`` for an unrounded DAC); unused without an ADC.
        step: float64 ``(n_row_tiles, O)``: ``F / L_a`` with an ADC, else ``1 / L_d`` (or 1).
        bias: Digital bias, float32 ``(O,)`` (zeros for none).
        dac_mode: 1 = inputs are scaled per row by ``s`` (DAC present, or ADC present), 0 = raw.
        dac_levels: ``2**(bits-1) - 1`` of the DAC (float), 0 for an unrounded ``x / s``.
        input_range: Fixed DAC full scale, <= 0 for the per-row ``max |x|``.
        adc_levels: ``2**(bits-1) - 1`` of the ADC (float), 0 for ideal.
        kh: Kernel height.
        kw: Kernel width.
        sh: Vertical stride.
        sw: Horizontal stride.
        dh: Vertical dilation.
        dw: Horizontal dilation.
        out: Output, float32 ``(S, B, O, Ho, Wo)``, written in place.
    """
    n_b, n_c, _, _ = x.shape
    n_s, n_k, n_o = wt.shape
    n_t = bounds.shape[0] - 1
    ho = out.shape[3]
    wo = out.shape[4]
    for b in prange(n_b):
        patch = np.empty(n_k, dtype=np.float32)
        acc = np.empty(n_o, dtype=np.float32)
        tot = np.empty(n_o, dtype=np.float64)
        for oh in range(ho):
            for ow in range(wo):
                k = 0
                m = np.float32(0.0)
                for c in range(n_c):
                    for i in range(kh):
                        r = oh * sh + i * dh
                        for j in range(kw):
                            v = x[b, c, r, ow * sw + j * dw]
                            patch[k] = v
                            k += 1
                            av = abs(v)
                            if av > m:
                                m = av
                s = 1.0
                if dac_mode > 0:
                    if input_range > 0:
                        s = input_range
                    else:
                        s = np.float64(m)
                    if s > 0:
                        for k in range(n_k):
                            xv = min(max(np.float64(patch[k]), -s), s)
                            if dac_levels > 0:
                                q = np.rint(xv / s * dac_levels)
                                patch[k] = np.float32(min(max(q, -dac_levels), dac_levels))
                            else:
                                patch[k] = np.float32(xv / s)
                    else:
                        for k in range(n_k):
                            patch[k] = 0.0
                for smp in range(n_s):
                    for o in range(n_o):
                        tot[o] = 0.0
                    for t in range(n_t):
                        for o in range(n_o):
                            acc[o] = 0.0
                        for k in range(bounds[t], bounds[t + 1]):
                            v = patch[k]
                            if v != 0.0:
                                for o in range(n_o):
                                    acc[o] += v * wt[smp, k, o]
                        if adc_levels > 0:
                            for o in range(n_o):
                                g = gain[t, o]
                                v = min(max(np.rint(np.float64(acc[o]) * g), -adc_levels),
                                        adc_levels)
                                tot[o] += v * step[t, o]
                        else:
                            for o in range(n_o):
                                tot[o] += np.float64(acc[o]) * step[t, o]
                    for o in range(n_o):
                        out[smp, b, o, oh, ow] = np.float32(tot[o] * s + bias[o])


@njit(parallel=True, cache=True)
def analog_conv_positions(x, wt, bounds, gain, step, bias, dac_mode, dac_levels, input_range,
                          adc_levels, kh, kw, sh, sw, dh, dw, out):  # pragma: no cover
    """Fused analog convolution vectorised over output positions.

    Same maths and arguments as :func:`analog_conv_forward`. Per image, the receptive fields
    are gathered into a local ``(K, Ho*Wo)`` block and DAC-quantised once; then for every
    sample, block of 4 output channels and row tile the bit-line sums of all positions are
    accumulated as ``acc[u, lp] += W[k, o0 + u] * P[k, lp]`` (contiguous in ``lp``, each
    ``P`` load used 4 times), ADC-converted and written in ``(S, B, O, Ho, Wo)`` layout.
    """
    n_b, n_c, _, _ = x.shape
    n_s, n_k, n_o = wt.shape
    n_t = bounds.shape[0] - 1
    ho = out.shape[3]
    wo = out.shape[4]
    n_l = ho * wo
    for b in prange(n_b):
        pm = np.empty((n_k, n_l), dtype=np.float32)
        sc = np.zeros(n_l, dtype=np.float64)
        acc = np.empty((4, n_l), dtype=np.float32)
        tot = np.empty((4, n_l), dtype=np.float64)
        for c in range(n_c):
            for i in range(kh):
                for j in range(kw):
                    k = (c * kh + i) * kw + j
                    for oh in range(ho):
                        r = oh * sh + i * dh
                        for ow in range(wo):
                            pm[k, oh * wo + ow] = x[b, c, r, ow * sw + j * dw]
        if dac_mode > 0:
            if input_range > 0:
                for lp in range(n_l):
                    sc[lp] = input_range
            else:
                for k in range(n_k):
                    for lp in range(n_l):
                        a = abs(np.float64(pm[k, lp]))
                        if a > sc[lp]:
                            sc[lp] = a
            for k in range(n_k):
                for lp in range(n_l):
                    s = sc[lp]
                    if s > 0:
                        xv = min(max(np.float64(pm[k, lp]), -s), s)
                        if dac_levels > 0:
                            q = np.rint(xv / s * dac_levels)
                            pm[k, lp] = np.float32(min(max(q, -dac_levels), dac_levels))
                        else:
                            pm[k, lp] = np.float32(xv / s)
                    else:
                        pm[k, lp] = 0.0
        else:
            for lp in range(n_l):
                sc[lp] = 1.0
        for smp in range(n_s):
            for o0 in range(0, n_o, 4):
                nb = min(4, n_o - o0)
                tot[:, :] = 0.0
                for t in range(n_t):
                    acc[:, :] = 0.0
                    if nb == 4:
                        for k in range(bounds[t], bounds[t + 1]):
                            w0 = wt[smp, k, o0]
                            w1 = wt[smp, k, o0 + 1]
                            w2 = wt[smp, k, o0 + 2]
                            w3 = wt[smp, k, o0 + 3]
                            for lp in range(n_l):
                                v = pm[k, lp]
                                acc[0, lp] += w0 * v
                                acc[1, lp] += w1 * v
                                acc[2, lp] += w2 * v
                                acc[3, lp] += w3 * v
                    else:
                        for u in range(nb):
                            for k in range(bounds[t], bounds[t + 1]):
                                w = wt[smp, k, o0 + u]
                                for lp in range(n_l):
                                    acc[u, lp] += w * pm[k, lp]
                    for u in range(nb):
                        g = gain[t, o0 + u]
                        st = step[t, o0 + u]
                        if adc_levels > 0:
                            for lp in range(n_l):
                                v = min(max(np.rint(np.float64(acc[u, lp]) * g), -adc_levels),
                                        adc_levels)
                                tot[u, lp] += v * st
                        else:
                            for lp in range(n_l):
                                tot[u, lp] += np.float64(acc[u, lp]) * st
                for u in range(nb):
                    bo = bias[o0 + u]
                    for oh in range(ho):
                        for ow in range(wo):
                            lp = oh * wo + ow
                            out[smp, b, o0 + u, oh, ow] = np.float32(tot[u, lp] * sc[lp] + bo)


@njit(cache=True)
def dac_rows(x, dac_mode, dac_levels, input_range, codes, scales):  # pragma: no cover
    """DAC of a batch of input vectors (xbar's rule), for the BLAS path of linear layers.

    Serial on purpose: the work is small and a parallel region's wake-up costs more.

    Args:
        x: float32 ``(N, K)`` inputs.
        dac_mode: 1 = scale each vector by ``s``, 0 = copy the inputs.
        dac_levels: ``2**(bits-1) - 1`` (float), 0 for an unrounded ``x / s``.
        input_range: Fixed DAC full scale, <= 0 for the per-vector ``max |x|``.
        codes: float32 ``(N, K)`` output: integer codes (or ``x / s``, or ``x`` if mode 0).
        scales: float64 ``(N,)`` output: ``s`` per vector (1 if mode 0).
    """
    n_k = x.shape[1]
    for b in range(x.shape[0]):
        if dac_mode == 0:
            scales[b] = 1.0
            for k in range(n_k):
                codes[b, k] = x[b, k]
            continue
        s = input_range
        if s <= 0:
            s = 0.0
            for k in range(n_k):
                a = abs(np.float64(x[b, k]))
                if a > s:
                    s = a
        scales[b] = s
        for k in range(n_k):
            if s > 0:
                xv = min(max(np.float64(x[b, k]), -s), s)
                if dac_levels > 0:
                    q = np.rint(xv / s * dac_levels)
                    codes[b, k] = np.float32(min(max(q, -dac_levels), dac_levels))
                else:
                    codes[b, k] = np.float32(xv / s)
            else:
                codes[b, k] = 0.0


@njit(cache=True)
def adc_rows(p, gain, step, adc_levels, scales, bias, out):  # pragma: no cover - compiled
    """ADC per tile column, digital sum over row tiles, rescale and bias (xbar's rule).

    ``out[n, o] = s_n * sum_t step[t, o] * clip(rint(p[t, n, o] * gain[t, o]), -L, L) + b[o]``
    (``adc_levels == 0``: no rounding or clipping, ``gain`` ignored).

    Args:
        p: float32 ``(n_row_tiles, N, O)`` bit-line sums.
        gain: float64 ``(n_row_tiles, O)``: ``L_a / (F * L_d)``, 0 where ``F == 0``.
        step: float64 ``(n_row_tiles, O)``: ``F / L_a`` (or ``1 / L_d`` without an ADC).
        adc_levels: ``2**(bits-1) - 1`` (float) or 0 for ideal.
        scales: float64 ``(N,)`` DAC scales.
        bias: float32 ``(O,)``.
        out: float32 ``(N, O)`` output.
    """
    n_t, n_n, n_o = p.shape
    for n in range(n_n):
        s = scales[n]
        for o in range(n_o):
            acc = 0.0
            for t in range(n_t):
                if adc_levels > 0:
                    v = min(max(np.rint(np.float64(p[t, n, o]) * gain[t, o]), -adc_levels),
                            adc_levels)
                else:
                    v = np.float64(p[t, n, o])
                acc += v * step[t, o]
            out[n, o] = np.float32(acc * s + bias[o])

