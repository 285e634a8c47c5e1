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

#: Images per parallel work item of the conv kernel (scratch arrays allocated once each).
_BLOCK = 16


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
                          adc_levels, kh, kw, sh, sw, dh, dw, ho, wo, relu, pool,
                          out):  # pragma: no cover - compiled
    """Fused analog convolution vectorised over output positions, optional ReLU + max-pool.

    Same maths as :func:`analog_conv_forward`. Per image, the receptive fields are gathered
    into a local ``(K, L)`` block (``L = Ho*Wo``) and DAC-quantised once (branch-free, so it
    vectorises over positions). Then for every sample, block of 4 output channels and row
    tile the bit-line sums of all positions are accumulated as
    ``acc[u, l] += W[k, o + u] * P[k, l]`` for ``k`` ascending in float32 (the order of
    :func:`analog_conv_forward`; contiguous in ``l``, each ``P`` load used 4 times),
    ADC-converted into a float64 total per tile column. The
    conv output ``y = float32(s * total + bias)`` then optionally goes through ``max(y, 0)``
    and a max-pool (NaN-propagating, ``-inf`` padding: torch's ``nn.ReLU``/``nn.MaxPool2d``
    bit for bit) before it is written.

    Args:
        x: Padded input, float32 ``(SX, B, C, Hp, Wp)``; ``SX == 1``: one input shared by
            all ``S`` samples (quantised once), ``SX == S``: sample ``s`` reads ``x[s]``.
        wt: Effective weights, float32 ``(S, K, O)`` (see :func:`analog_conv_forward`).
        bounds: Row-tile boundaries along ``K``, int64 ``(n_row_tiles + 1,)``.
        gain: float64 ``(n_row_tiles, O)`` ADC gain (see :func:`analog_conv_forward`).
        step: float64 ``(n_row_tiles, O)`` ADC step (see :func:`analog_conv_forward`).
        bias: Digital bias, float32 ``(O,)``.
        dac_mode: 1 = inputs scaled per position by ``s``, 0 = raw.
        dac_levels: ``2**(bits-1) - 1`` of the DAC (float), 0 for an unrounded ``x / s``.
        input_range: Fixed DAC full scale, <= 0 for the per-position ``max |x|``.
        adc_levels: ``2**(bits-1) - 1`` of the ADC (float), 0 for ideal.
        kh: Kernel height.
        kw: Kernel width.
        sh: Vertical stride.
        sw: Horizontal stride.
        dh: Vertical dilation.
        dw: Horizontal dilation.
        ho: Conv output height.
        wo: Conv output width.
        relu: 1 = apply ``max(y, 0)`` (NaN kept).
        pool: int64 ``(8,)`` max-pool ``(kh, kw, sh, sw, ph, pw, dh, dw)``; ``kh == 0``: none.
        out: float32 ``(S, B, O, Hq, Wq)``, written in place (``Hq, Wq = ho, wo`` without pool).
    """
    n_sx, n_b, n_c, _, _ = x.shape
    n_s, n_k, n_o = wt.shape
    n_t = bounds.shape[0] - 1
    n_l = ho * wo
    hq = out.shape[3]
    wq = out.shape[4]
    pkh, pkw, psh, psw, pph, ppw, pdh, pdw = (pool[0], pool[1], pool[2], pool[3], pool[4],
                                              pool[5], pool[6], pool[7])
    n_items = n_sx * n_b
    n_blocks = (n_items + _BLOCK - 1) // _BLOCK
    for blk in prange(n_blocks):        # scratch allocated once per block of images
        pm = np.empty((n_k, n_l), dtype=np.float32)
        sc = np.empty(n_l, dtype=np.float64)
        sd = np.empty(n_l, dtype=np.float64)
        acc = np.empty((4, n_l), dtype=np.float32)
        tot = np.empty((4, n_l), dtype=np.float64)
        y = np.empty((n_o, n_l), dtype=np.float32)
        for idx in range(blk * _BLOCK, min(n_items, (blk + 1) * _BLOCK)):
            xs = idx // n_b
            b = idx - xs * n_b
            sc[:] = 0.0
            sd[:] = 1.0
            for c in range(n_c):
                for i in range(kh):
                    for j in range(kw):
                        k = (c * kh + i) * kw + j
                        c0 = j * dw
                        for oh in range(ho):
                            r = oh * sh + i * dh
                            lp0 = oh * wo
                            if sw == 1:                 # unit stride: a vectorised copy
                                for ow in range(wo):
                                    pm[k, lp0 + ow] = x[xs, b, c, r, c0 + ow]
                            else:
                                for ow in range(wo):
                                    pm[k, lp0 + ow] = x[xs, b, c, r, c0 + ow * sw]
            if dac_mode > 0:
                if input_range > 0:
                    for lp in range(n_l):
                        sc[lp] = input_range
                else:
                    for k in range(n_k):
                        for lp in range(n_l):
                            sc[lp] = max(sc[lp], abs(np.float64(pm[k, lp])))
                for lp in range(n_l):
                    if sc[lp] > 0:
                        sd[lp] = sc[lp]
                # s == 0 only where the whole field is 0 (or input_range <= 0): codes 0 via sd = 1
                for k in range(n_k):
                    if dac_levels > 0:
                        for lp in range(n_l):
                            s = sd[lp]
                            q = np.rint(min(max(np.float64(pm[k, lp]), -s), s) / s * dac_levels)
                            pm[k, lp] = np.float32(min(max(q, -dac_levels), dac_levels))
                    else:
                        for lp in range(n_l):
                            s = sd[lp]
                            pm[k, lp] = np.float32(min(max(np.float64(pm[k, lp]), -s), s) / s)
            else:
                for lp in range(n_l):
                    sc[lp] = 1.0
            s_lo = 0 if n_sx == 1 else xs
            s_hi = n_s if n_sx == 1 else xs + 1
            for smp in range(s_lo, s_hi):
                for o0 in range(0, n_o, 4):
                    nb = min(4, n_o - o0)
                    tot[:, :] = 0.0
                    for t in range(n_t):
                        acc[:, :] = 0.0
                        k0 = bounds[t]
                        k1 = bounds[t + 1]
                        if nb == 4:
                            # 4 rows of k per pass over the accumulators (each still summed in
                            # ascending k, one rounding per product and per add: same result)
                            k4 = k0 + (k1 - k0) // 4 * 4
                            for k in range(k0, k4, 4):
                                a0 = wt[smp, k, o0]
                                a1 = wt[smp, k, o0 + 1]
                                a2 = wt[smp, k, o0 + 2]
                                a3 = wt[smp, k, o0 + 3]
                                b0 = wt[smp, k + 1, o0]
                                b1 = wt[smp, k + 1, o0 + 1]
                                b2 = wt[smp, k + 1, o0 + 2]
                                b3 = wt[smp, k + 1, o0 + 3]
                                c0 = wt[smp, k + 2, o0]
                                c1 = wt[smp, k + 2, o0 + 1]
                                c2 = wt[smp, k + 2, o0 + 2]
                                c3 = wt[smp, k + 2, o0 + 3]
                                d0 = wt[smp, k + 3, o0]
                                d1 = wt[smp, k + 3, o0 + 1]
                                d2 = wt[smp, k + 3, o0 + 2]
                                d3 = wt[smp, k + 3, o0 + 3]
                                for lp in range(n_l):
                                    va = pm[k, lp]
                                    vb = pm[k + 1, lp]
                                    vc = pm[k + 2, lp]
                                    vd = pm[k + 3, lp]
                                    s0 = acc[0, lp] + a0 * va
                                    s0 = s0 + b0 * vb
                                    s0 = s0 + c0 * vc
                                    acc[0, lp] = s0 + d0 * vd
                                    s1 = acc[1, lp] + a1 * va
                                    s1 = s1 + b1 * vb
                                    s1 = s1 + c1 * vc
                                    acc[1, lp] = s1 + d1 * vd
                                    s2 = acc[2, lp] + a2 * va
                                    s2 = s2 + b2 * vb
                                    s2 = s2 + c2 * vc
                                    acc[2, lp] = s2 + d2 * vd
                                    s3 = acc[3, lp] + a3 * va
                                    s3 = s3 + b3 * vb
                                    s3 = s3 + c3 * vc
                                    acc[3, lp] = s3 + d3 * vd
                            for k in range(k4, k1):
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
                        elif nb == 2:
                            k4 = k0 + (k1 - k0) // 4 * 4
                            for k in range(k0, k4, 4):
                                a0 = wt[smp, k, o0]
                                a1 = wt[smp, k, o0 + 1]
                                b0 = wt[smp, k + 1, o0]
                                b1 = wt[smp, k + 1, o0 + 1]
                                c0 = wt[smp, k + 2, o0]
                                c1 = wt[smp, k + 2, o0 + 1]
                                d0 = wt[smp, k + 3, o0]
                                d1 = wt[smp, k + 3, o0 + 1]
                                for lp in range(n_l):
                                    va = pm[k, lp]
                                    vb = pm[k + 1, lp]
                                    vc = pm[k + 2, lp]
                                    vd = pm[k + 3, lp]
                                    s0 = acc[0, lp] + a0 * va
                                    s0 = s0 + b0 * vb
                                    s0 = s0 + c0 * vc
                                    acc[0, lp] = s0 + d0 * vd
                                    s1 = acc[1, lp] + a1 * va
                                    s1 = s1 + b1 * vb
                                    s1 = s1 + c1 * vc
                                    acc[1, lp] = s1 + d1 * vd
                            for k in range(k4, k1):
                                w0 = wt[smp, k, o0]
                                w1 = wt[smp, k, o0 + 1]
                                for lp in range(n_l):
                                    v = pm[k, lp]
                                    acc[0, lp] += w0 * v
                                    acc[1, lp] += w1 * v
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
                        for lp in range(n_l):
                            y[o0 + u, lp] = np.float32(tot[u, lp] * sc[lp] + bo)
                if relu > 0:
                    for o in range(n_o):
                        for lp in range(n_l):
                            if y[o, lp] < 0:
                                y[o, lp] = 0.0
                if pkh == 0:
                    for o in range(n_o):
                        for oh in range(ho):
                            for ow in range(wo):
                                out[smp, b, o, oh, ow] = y[o, oh * wo + ow]
                    continue
                if pkh == 2 and pkw == 2 and pph == 0 and ppw == 0:      # the common case
                    for o in range(n_o):
                        for qh in range(hq):
                            r0 = qh * psh * wo
                            r1 = r0 + pdh * wo
                            for qw in range(wq):
                                c0 = qw * psw
                                c1 = c0 + pdw
                                m = y[o, r0 + c0]
                                v = y[o, r0 + c1]
                                if v > m or np.isnan(v):
                                    m = v
                                v = y[o, r1 + c0]
                                if v > m or np.isnan(v):
                                    m = v
                                v = y[o, r1 + c1]
                                if v > m or np.isnan(v):
                                    m = v
                                out[smp, b, o, qh, qw] = m
                    continue
                for o in range(n_o):
                    for qh in range(hq):
                        for qw in range(wq):
                            m = np.float32(-np.inf)
                            for i in range(pkh):
                                r = qh * psh - pph + i * pdh
                                if r < 0 or r >= ho:
                                    continue
                                for j in range(pkw):
                                    cc = qw * psw - ppw + j * pdw
                                    if cc < 0 or cc >= wo:
                                        continue
                                    v = y[o, r * wo + cc]
                                    if v > m or np.isnan(v):
                                        m = v
                            out[smp, b, o, qh, qw] = m


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
        else:
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

