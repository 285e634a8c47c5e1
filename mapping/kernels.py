"""Numba kernels of the Monte-Carlo fast path (fused im2col + DAC + tiled MAC + ADC).

Two conv kernels never materialise the im2col matrix: for every output position they gather
the receptive field (zero padding read in place), DAC-quantise it once (xbar's codes bit for
bit: a multiply per input, and :func:`xbar.kernels.dac_code` itself near rounding ties, see
:func:`_gather_codes`) and multiply it with the effective weights of ``S`` device samples
(the Monte-Carlo samples share the input's quantisation). Both can apply a folded batch-norm
affine, a ReLU and a max-pool to their output; :func:`analog_conv_positions` vectorises over
output positions, :func:`analog_conv_forward` over output channels (deep layers with few
positions). Linear layers use :func:`dac_rows`, a BLAS
GEMM per row tile and :func:`adc_rows`. :func:`relu_maxpool` is the same ReLU / max-pool on
its own, for digital ops that follow another digital module. Both conv kernels can also
apply a digital 1x1 correction of their output before the ReLU / max-pool
(:func:`correct_write`, :mod:`mapping.correction`): its input part (the receptive average
pool of the conv's input, :func:`_window_means`) once per image, the rest per sample.

Arguments common to the conv kernels, packed so that the signatures stay short:

* ``periph``: float64 ``(4,)`` = ``(dac_mode, dac_levels, input_range, adc_levels)``:
  ``dac_mode`` 1 = inputs scaled per position by ``s`` (DAC present, or ADC present), 0 = raw;
  ``dac_levels`` ``2**(bits-1) - 1`` of the DAC, 0 for an unrounded ``x / s``;
  ``input_range`` a fixed DAC full scale, <= 0 for the per-position ``max |x|``;
  ``adc_levels`` ``2**(bits-1) - 1`` of the ADC, 0 for ideal.
* ``geom``: int64 ``(10,)`` = ``(kh, kw, sh, sw, dh, dw, ho, wo, pt, pl)``: kernel, stride,
  dilation, the conv output size and the zero padding at the top and left (the input is
  passed unpadded; taps outside it read 0).
* ``gain``, ``step``: float64 ``(n_row_tiles, O)``, :func:`xbar.adc_gain_step` (with an ADC;
  ``step = 1 / L_d`` or 1 without one).

Kernels take contiguous arrays and scalars only; the validating wrapper is
:func:`mapping.fastpath.fused_forward`. Maths as in :mod:`mapping.torch_ops`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from xbar.kernels import dac_code

#: Images per parallel work item of the conv kernel (scratch arrays allocated once each).
_BLOCK = 16


@njit(cache=True, inline="always")
def _adc(acc, gain, step, adc_levels):  # pragma: no cover - compiled
    """One bit-line sum through the ADC: ``clip(rint(acc * gain), -L, L) * step`` (float64)."""
    if adc_levels > 0:
        return min(max(np.rint(np.float64(acc) * gain), -adc_levels), adc_levels) * step
    return np.float64(acc) * step


@njit(cache=True)
def _gather_fields(x, xs, b, geom, pm):  # pragma: no cover - compiled
    """Receptive fields of image ``x[xs, b]`` into ``pm`` ``(K, L)``, ``k`` in ``(c, i, j)``.

    ``x`` is unpadded: a tap outside it (the zero padding ``geom[8], geom[9]`` at the top and
    left, and whatever the output size implies at the bottom and right) reads 0.
    """
    kh, kw, sh, sw, dh, dw, ho, wo = (geom[0], geom[1], geom[2], geom[3], geom[4], geom[5],
                                      geom[6], geom[7])
    pt, pl = geom[8], geom[9]
    n_h, n_w = x.shape[3], x.shape[4]
    # indices cast to uint64 (never negative here): no negative-index fix-up, so the row
    # loops vectorise (1-D slices per row would cost a reference count each)
    for c in range(x.shape[2]):
        xc = x[xs, b, c]
        for i in range(kh):
            for j in range(kw):
                pk = pm[(c * kh + i) * kw + j]
                c0 = j * dw - pl
                lo, hi = _col_range(c0, sw, n_w, wo)
                for oh in range(ho):
                    r = oh * sh + i * dh - pt
                    lp0 = oh * wo
                    if r < 0 or r >= n_h:
                        for ow in range(wo):
                            pk[np.uint64(lp0 + ow)] = 0.0
                        continue
                    for ow in range(lo):
                        pk[np.uint64(lp0 + ow)] = 0.0
                    xr = xc[r]
                    if sw == 1:                 # unit stride: a vectorised copy
                        for ow in range(lo, hi):
                            pk[np.uint64(lp0 + ow)] = xr[np.uint64(c0 + ow)]
                    else:
                        for ow in range(lo, hi):
                            pk[np.uint64(lp0 + ow)] = xr[np.uint64(c0 + ow * sw)]
                    for ow in range(hi, wo):
                        pk[np.uint64(lp0 + ow)] = 0.0


#: Distance to a rounding tie, per DAC level, below which the fast DAC redoes a field exactly.
_TIE_MARGIN = 1e-13
#: Largest finite float32.
_F32_MAX = 3.4028234663852886e38


@njit(cache=True)
def _field_scales(pm, periph, sc, sd):  # pragma: no cover - compiled
    """Each position's DAC scale ``s`` into ``sc`` and the divisor into ``sd``.

    ``s == 0`` only where the whole field is 0 (or ``input_range <= 0``): codes 0 via
    ``sd = 1``.
    """
    n_k, n_l = pm.shape
    sc[:] = 0.0
    sd[:] = 1.0
    if periph[2] > 0:
        sc[:] = periph[2]
    else:
        for k in range(n_k):
            for lp in range(n_l):
                sc[lp] = max(sc[lp], abs(np.float64(pm[k, lp])))
    for lp in range(n_l):
        if sc[lp] > 0:
            sd[lp] = sc[lp]


@njit(cache=True)
def _dac_fields_exact(pm, periph, sc, sd):  # pragma: no cover - compiled
    """DAC of every field in place with xbar's rule as written (a division per input)."""
    n_k, n_l = pm.shape
    _field_scales(pm, periph, sc, sd)
    levels = periph[1]
    for k in range(n_k):
        for lp in range(n_l):
            pm[k, lp] = np.float32(dac_code(np.float64(pm[k, lp]), sd[lp], levels))


@njit(cache=True)
def _col_range(c0, sw, n_w, wo):  # pragma: no cover - compiled
    """Output columns ``[lo, hi)`` whose tap ``c0 + ow * sw`` lies inside ``[0, n_w)``."""
    lo = 0 if c0 >= 0 else (sw - 1 - c0) // sw
    hi = (n_w - 1 - c0) // sw + 1
    lo = min(lo, wo)
    return lo, min(max(hi, lo), wo)


@njit(cache=True)
def _window_scales(x, xs, b, geom, amax, sc):  # pragma: no cover - compiled
    """``sc[lp]`` = ``max |x|`` over position ``lp``'s receptive field (0 for taps outside).

    The channel-wise ``max |x|`` per pixel first (``amax`` ``(H, W)``), then its maximum over
    each window: max is exact, so this equals the maximum over the gathered field. Returns
    the number of NaN or infinite inputs (a maximum with NaN depends on the order, and the
    fast DAC assumes finite scales: the caller then takes the exact path).
    """
    kh, kw, sh, sw, dh, dw, ho, wo = (geom[0], geom[1], geom[2], geom[3], geom[4], geom[5],
                                      geom[6], geom[7])
    pt, pl = geom[8], geom[9]
    n_h, n_w = x.shape[3], x.shape[4]
    amax[:, :] = 0.0
    nan = 0
    for c in range(x.shape[2]):
        for r in range(n_h):
            for col in range(n_w):
                a = abs(x[xs, b, c, r, col])
                nan += not a <= _F32_MAX            # NaN or inf
                amax[r, col] = max(amax[r, col], a)
    for oh in range(ho):
        for ow in range(wo):
            m = np.float32(0.0)
            for i in range(kh):
                r = oh * sh + i * dh - pt
                if r < 0 or r >= n_h:
                    continue
                for j in range(kw):
                    col = ow * sw + j * dw - pl
                    if col >= 0 and col < n_w:
                        m = max(m, amax[r, col])
            sc[oh * wo + ow] = np.float64(m)
    return nan


@njit(cache=True)
def _gather_codes(x, xs, b, geom, levels, clip, sd, inv, pm):  # pragma: no cover - compiled
    """Receptive fields of ``x[xs, b]`` gathered straight into rounding-DAC codes ``pm``.

    ``rint(x * (L / s))`` (``inv = L / s`` per position) instead of xbar's
    ``rint(x / s * L)``: both are within two roundings (relative ``2**-53`` each) of
    ``x L / s``, so they differ by at most ``4.5e-16 * L``, and their codes are equal unless
    ``x * (L / s)`` lies within ``_TIE_MARGIN * L`` (over 200 times that) of a half-integer.
    Such inputs are counted and the count returned (0: every code is xbar's); the caller
    then quantises the fields again as written. Taps outside the input are code 0.
    ``clip == 0`` when the scale is each field's ``max |x|``: xbar's two clips are then
    no-ops (``|x / s * L| <= L`` exactly) and are skipped.
    """
    kh, kw, sh, sw, dh, dw, ho, wo = (geom[0], geom[1], geom[2], geom[3], geom[4], geom[5],
                                      geom[6], geom[7])
    pt, pl = geom[8], geom[9]
    n_h, n_w = x.shape[3], x.shape[4]
    lim = 0.5 - _TIE_MARGIN * levels    # |t - rint(t)| <= 0.5; above lim: a near tie
    near = 0
    for c in range(x.shape[2]):         # indices as in _gather_fields (uint64)
        xc = x[xs, b, c]
        for i in range(kh):
            for j in range(kw):
                pk = pm[(c * kh + i) * kw + j]
                c0 = j * dw - pl
                lo, hi = _col_range(c0, sw, n_w, wo)
                for oh in range(ho):
                    r = oh * sh + i * dh - pt
                    lp0 = oh * wo
                    if r < 0 or r >= n_h:
                        for ow in range(wo):
                            pk[np.uint64(lp0 + ow)] = 0.0
                        continue
                    for ow in range(lo):
                        pk[np.uint64(lp0 + ow)] = 0.0
                    xr = xc[r]
                    if clip == 0 and sw == 1:   # |x| <= s: xbar's clips are no-ops
                        for ow in range(lo, hi):
                            lp = np.uint64(lp0 + ow)
                            t = np.float64(xr[np.uint64(c0 + ow)]) * inv[lp]
                            cq = np.rint(t)
                            near += abs(t - cq) > lim
                            pk[lp] = np.float32(cq)
                    else:
                        for ow in range(lo, hi):
                            lp = np.uint64(lp0 + ow)
                            s = sd[lp]
                            t = min(max(np.float64(xr[np.uint64(c0 + ow * sw)]), -s), s) * inv[lp]
                            cq = np.rint(t)
                            near += abs(t - cq) > lim
                            pk[lp] = np.float32(min(max(cq, -levels), levels))
                    for ow in range(hi, wo):
                        pk[np.uint64(lp0 + ow)] = 0.0
    return near


@njit(cache=True)
def _quantised_fields(x, xs, b, geom, periph, pm, sc, sd, inv,
                      amax):  # pragma: no cover - compiled
    """Gather the receptive fields of image ``x[xs, b]`` and DAC them (codes in ``pm``).

    ``sc`` gets each position's scale ``s``. Without a DAC (``dac_mode == 0``) ``pm`` is left
    raw and ``s = 1``. A rounding DAC (``dac_levels > 0``) computes the scales from ``x``
    (:func:`_window_scales`) and gathers codes directly (:func:`_gather_codes`, the fast
    multiply per input); near a tie (or with NaN inputs) the fields are
    gathered raw and quantised as written (:func:`_dac_fields_exact`). An unrounded DAC
    divides as written. Every path gives xbar's codes bit for bit.
    """
    if periph[0] > 0 and periph[1] > 0:
        nan = 0
        if periph[2] > 0:
            sc[:] = periph[2]
        else:
            nan = _window_scales(x, xs, b, geom, amax, sc)
        if nan == 0:
            for lp in range(sc.shape[0]):
                sd[lp] = sc[lp] if sc[lp] > 0 else 1.0
                inv[lp] = periph[1] / sd[lp]
            if _gather_codes(x, xs, b, geom, periph[1], int(periph[2] > 0), sd, inv, pm) == 0:
                return
    _gather_fields(x, xs, b, geom, pm)
    if periph[0] <= 0:
        sc[:] = 1.0
        return
    _dac_fields_exact(pm, periph, sc, sd)


@njit(cache=True)
def _mac4(pm, wt, smp, o0, k0, k1, acc):  # pragma: no cover - compiled
    """``acc[u, l] += W[k, o0 + u] * P[k, l]``, 4 channels, ``k`` ascending in float32.

    Four rows of ``k`` per pass over the accumulators (each still summed in ascending ``k``,
    one rounding per product and per add: the same result as one row at a time).
    """
    n_l = pm.shape[1]
    k4 = k0 + (k1 - k0) // 4 * 4
    for k in range(k0, k4, 4):
        a0, a1, a2, a3 = wt[smp, k, o0], wt[smp, k, o0 + 1], wt[smp, k, o0 + 2], wt[smp, k, o0 + 3]
        b0, b1, b2, b3 = (wt[smp, k + 1, o0], wt[smp, k + 1, o0 + 1], wt[smp, k + 1, o0 + 2],
                          wt[smp, k + 1, o0 + 3])
        c0, c1, c2, c3 = (wt[smp, k + 2, o0], wt[smp, k + 2, o0 + 1], wt[smp, k + 2, o0 + 2],
                          wt[smp, k + 2, o0 + 3])
        d0, d1, d2, d3 = (wt[smp, k + 3, o0], wt[smp, k + 3, o0 + 1], wt[smp, k + 3, o0 + 2],
                          wt[smp, k + 3, o0 + 3])
        for lp in range(n_l):
            va, vb, vc, vd = pm[k, lp], pm[k + 1, lp], pm[k + 2, lp], pm[k + 3, lp]
            acc[0, lp] = (((acc[0, lp] + a0 * va) + b0 * vb) + c0 * vc) + d0 * vd
            acc[1, lp] = (((acc[1, lp] + a1 * va) + b1 * vb) + c1 * vc) + d1 * vd
            acc[2, lp] = (((acc[2, lp] + a2 * va) + b2 * vb) + c2 * vc) + d2 * vd
            acc[3, lp] = (((acc[3, lp] + a3 * va) + b3 * vb) + c3 * vc) + d3 * vd
    for k in range(k4, k1):
        w0, w1, w2, w3 = wt[smp, k, o0], wt[smp, k, o0 + 1], wt[smp, k, o0 + 2], wt[smp, k, o0 + 3]
        for lp in range(n_l):
            v = pm[k, lp]
            acc[0, lp] += w0 * v
            acc[1, lp] += w1 * v
            acc[2, lp] += w2 * v
            acc[3, lp] += w3 * v


@njit(cache=True)
def _mac2(pm, wt, smp, o0, k0, k1, acc):  # pragma: no cover - compiled
    """:func:`_mac4` for 2 channels (the same order of operations)."""
    n_l = pm.shape[1]
    k4 = k0 + (k1 - k0) // 4 * 4
    for k in range(k0, k4, 4):
        a0, a1 = wt[smp, k, o0], wt[smp, k, o0 + 1]
        b0, b1 = wt[smp, k + 1, o0], wt[smp, k + 1, o0 + 1]
        c0, c1 = wt[smp, k + 2, o0], wt[smp, k + 2, o0 + 1]
        d0, d1 = wt[smp, k + 3, o0], wt[smp, k + 3, o0 + 1]
        for lp in range(n_l):
            va, vb, vc, vd = pm[k, lp], pm[k + 1, lp], pm[k + 2, lp], pm[k + 3, lp]
            acc[0, lp] = (((acc[0, lp] + a0 * va) + b0 * vb) + c0 * vc) + d0 * vd
            acc[1, lp] = (((acc[1, lp] + a1 * va) + b1 * vb) + c1 * vc) + d1 * vd
    for k in range(k4, k1):
        w0, w1 = wt[smp, k, o0], wt[smp, k, o0 + 1]
        for lp in range(n_l):
            v = pm[k, lp]
            acc[0, lp] += w0 * v
            acc[1, lp] += w1 * v


@njit(cache=True)
def _mac1(pm, wt, smp, o0, nb, k0, k1, acc):  # pragma: no cover - compiled
    """:func:`_mac4` one channel at a time, for ``nb`` channels (1 or 3)."""
    n_l = pm.shape[1]
    for u in range(nb):
        for k in range(k0, k1):
            w = wt[smp, k, o0 + u]
            for lp in range(n_l):
                acc[u, lp] += w * pm[k, lp]


@njit(cache=True)
def _conv_sample(pm, wt, smp, bounds, gain, step, bias, adc_levels, sc, acc, tot,
                 y):  # pragma: no cover - compiled
    """Conv output ``y`` ``(O, L)`` of sample ``smp`` from the quantised fields ``pm``.

    Per block of 4 output channels and row tile: bit-line sums (:func:`_mac4`), ADC into a
    float64 total per tile column, then ``y = float32(s * total + bias)``.
    """
    n_o = wt.shape[2]
    n_l = pm.shape[1]
    for o0 in range(0, n_o, 4):
        nb = min(4, n_o - o0)
        tot[:, :] = 0.0
        for t in range(bounds.shape[0] - 1):
            acc[:, :] = 0.0
            if nb == 4:
                _mac4(pm, wt, smp, o0, bounds[t], bounds[t + 1], acc)
            elif nb == 2:
                _mac2(pm, wt, smp, o0, bounds[t], bounds[t + 1], acc)
            else:
                _mac1(pm, wt, smp, o0, nb, bounds[t], bounds[t + 1], acc)
            for u in range(nb):
                g = gain[t, o0 + u]
                st = step[t, o0 + u]
                for lp in range(n_l):
                    tot[u, lp] += _adc(acc[u, lp], g, st, adc_levels)
        for u in range(nb):
            bo = bias[o0 + u]
            for lp in range(n_l):
                y[o0 + u, lp] = np.float32(tot[u, lp] * sc[lp] + bo)


@njit(cache=True)
def _relu_pool2(y, relu, pool, wo, out):  # pragma: no cover - compiled
    """:func:`_post_write`'s ReLU + 2x2 max-pool of ``y`` ``(O, Ho*Wo)``, ``y`` left as is.

    The ReLU is applied to each value as the pool reads it (the same values, in the same
    order, as ReLU first and pool after).
    """
    psh, psw, pdh, pdw = pool[2], pool[3], pool[6], pool[7]
    hq, wq = out.shape[1], out.shape[2]
    zero = np.float32(0.0)
    for o in range(y.shape[0]):
        yo = y[o]
        for qh in range(hq):
            r0 = qh * psh * wo
            r1 = r0 + pdh * wo
            for qw in range(wq):
                c0 = qw * psw
                c1 = c0 + pdw
                m = yo[np.uint64(r0 + c0)]
                v1 = yo[np.uint64(r0 + c1)]
                v2 = yo[np.uint64(r1 + c0)]
                v3 = yo[np.uint64(r1 + c1)]
                if relu > 0:
                    m = zero if m < 0 else m
                    v1 = zero if v1 < 0 else v1
                    v2 = zero if v2 < 0 else v2
                    v3 = zero if v3 < 0 else v3
                m = v1 if (v1 > m or v1 != v1) else m
                m = v2 if (v2 > m or v2 != v2) else m
                m = v3 if (v3 > m or v3 != v3) else m
                out[o, qh, qw] = m


@njit(cache=True)
def _post_write(y, aff, relu, pool, ho, wo, out):  # pragma: no cover - compiled
    """Optional affine, ``max(y, 0)`` and max-pool of ``y`` ``(O, Ho*Wo)`` into ``out``.

    ``out`` is ``(O, Hq, Wq)``.
    The affine (a folded eval-mode batch-norm, ``aff`` float64 ``(2, O)`` holding float32
    values ``alpha, beta``; ``(2, 0)``: none) is ``float32(float64(y) * alpha + beta)``: the
    product is exact in float64, so this is torch's fused multiply-add ``fma(y, alpha, beta)``
    up to a double rounding (53 then 24 bits) that differs only on exact float32 ties.
    ReLU and max-pool are NaN-propagating with ``-inf`` padding: torch's
    ``nn.ReLU``/``nn.MaxPool2d`` bit for bit. ``pool[0] == 0``: no pool.
    """
    n_o = y.shape[0]
    hq, wq = out.shape[1], out.shape[2]
    if aff.shape[1] > 0:
        for o in range(n_o):
            al, be = aff[0, o], aff[1, o]
            for lp in range(y.shape[1]):
                y[o, lp] = np.float32(np.float64(y[o, lp]) * al + be)
    pkh, pkw, psh, psw, pph, ppw, pdh, pdw = (pool[0], pool[1], pool[2], pool[3], pool[4],
                                              pool[5], pool[6], pool[7])
    if pkh == 2 and pkw == 2 and pph == 0 and ppw == 0:      # the common case
        _relu_pool2(y, relu, pool, wo, out)
        return
    if relu > 0:
        for o in range(n_o):
            for lp in range(y.shape[1]):
                v = y[o, lp]
                y[o, lp] = np.float32(0.0) if v < 0 else v   # unconditional store: vectorises
    # flat indices cast to uint64 (never negative): no negative-index fix-up
    if pkh == 0:
        for o in range(n_o):
            yo = y[o]
            for oh in range(ho):
                for ow in range(wo):
                    out[o, oh, ow] = yo[np.uint64(oh * wo + ow)]
    else:
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
                    out[o, qh, qw] = m


@njit(cache=True)
def _correction_scratch(x, cg, n_o, ho, wo):  # pragma: no cover - compiled
    """Scratch of a correction (:func:`correct_write`; empty without one).

    ``(xp, accf, pooled, t, g, z, part)``.
    """
    n_c, n_h, n_w = x.shape[2], x.shape[3], x.shape[4]
    n_m = cg[6]
    on = 1 if n_m > 0 else 0
    rows = on * ho * wo
    wp = n_w + 2 * cg[5]
    return (np.empty(on * (n_h + 2 * cg[4]) * wp, dtype=np.float32),
            np.empty(on * ho * wp, dtype=np.float32),
            np.empty((on * n_c, rows), dtype=np.float32),
            np.empty((n_m, rows), dtype=np.float32), np.empty((n_m, rows), dtype=np.float32),
            np.empty((n_o if n_m > 0 else 0, rows), dtype=np.float32),
            np.empty((4, rows), dtype=np.float32))


@njit(parallel=True, cache=True)
def analog_conv_positions(x, wt, bounds, gain, step, bias, periph, geom, aff, relu, pool, cg,
                          cw, out):  # pragma: no cover - compiled
    """Fused analog convolution vectorised over output positions, optional ReLU + max-pool.

    Per image, the receptive fields are gathered into a local ``(K, L)`` block (``L =
    Ho*Wo``, :func:`_gather_fields`) and DAC-quantised once (:func:`_quantised_fields`). Then for
    every sample the bit-line sums of all positions are accumulated in float32 for ``k``
    ascending, ADC-converted into a float64 total per tile column (:func:`_conv_sample`),
    and the output ``y = float32(s * total + bias)`` optionally goes through a per-channel
    affine (a folded batch-norm), ``max(y, 0)`` and a max-pool (:func:`_post_write`) before
    it is written.

    Args:
        x: Input, float32 ``(SX, B, C, H, W)``, unpadded (the zero padding is in ``geom``);
            ``SX == 1``: one input shared by all ``S`` samples (quantised once), ``SX == S``:
            sample ``s`` reads ``x[s]``.
        wt: Effective weights, transposed, float32 ``(S, K, O)``, ``K = C*kh*kw`` in
            ``(c, i, j)`` order (torch ``weight.flatten(1)``).
        bounds: Row-tile boundaries along ``K``, int64 ``(n_row_tiles + 1,)``.
        gain: float64 ``(n_row_tiles, O)`` ADC gain (module docstring).
        step: float64 ``(n_row_tiles, O)`` ADC step (module docstring).
        bias: Digital bias, float32 ``(O,)`` (zeros for none).
        periph: float64 ``(4,)`` converter constants (module docstring).
        geom: int64 ``(10,)`` geometry (module docstring).
        aff: float64 ``(2, O)`` affine ``alpha, beta`` after the bias, or ``(2, 0)``: none.
        relu: 1 = apply ``max(y, 0)`` (NaN kept).
        pool: int64 ``(8,)`` max-pool ``(kh, kw, sh, sw, ph, pw, dh, dw)``; ``kh == 0``: none.
        cg: int64 ``(8,)`` digital correction geometry (:func:`correct_write`); ``cg[6] == 0``:
            none. With one, ``y`` is corrected (``aff`` must then be ``(2, 0)``) before the
            ReLU and max-pool; its input part is computed once per image for all samples.
        cw: float32 packed correction weights (:func:`correct_write`).
        out: float32 ``(S, B, O, Hq, Wq)``, written in place (``Hq, Wq = ho, wo`` without pool).
    """
    n_sx, n_b = x.shape[0], x.shape[1]
    n_s, n_k, n_o = wt.shape
    ho, wo = geom[6], geom[7]
    n_l = ho * wo
    n_items = n_sx * n_b
    n_blocks = (n_items + _BLOCK - 1) // _BLOCK
    for blk in prange(n_blocks):        # scratch allocated once per block of images
        pm = np.empty((n_k, n_l), dtype=np.float32)
        sc = np.empty(n_l, dtype=np.float64)
        sd = np.empty(n_l, dtype=np.float64)
        inv = np.empty(n_l, dtype=np.float64)
        amax = np.empty((x.shape[3], x.shape[4]), dtype=np.float32)
        acc = np.empty((4, n_l), dtype=np.float32)
        tot = np.empty((4, n_l), dtype=np.float64)
        y = np.empty((n_o, n_l), dtype=np.float32)
        cxp, cacc, cp, ct, cgen, cz, cpart = _correction_scratch(x, cg, n_o, ho, wo)
        for idx in range(blk * _BLOCK, min(n_items, (blk + 1) * _BLOCK)):
            xs = idx // n_b
            b = idx - xs * n_b
            _quantised_fields(x, xs, b, geom, periph, pm, sc, sd, inv, amax)
            if cg[6] > 0:
                _correction_input(x, xs, b, cg, cw, ho, wo, cp, cxp, cacc, ct)
            s_lo = 0 if n_sx == 1 else xs
            s_hi = n_s if n_sx == 1 else xs + 1
            for smp in range(s_lo, s_hi):
                _conv_sample(pm, wt, smp, bounds, gain, step, bias, periph[3], sc, acc, tot, y)
                if cg[6] > 0:
                    correct_write(y, x.shape[2], cg, cw, ct, cgen, cz, cpart)
                    _post_write(cz, aff, relu, pool, ho, wo, out[smp, b])
                else:
                    _post_write(y, aff, relu, pool, ho, wo, out[smp, b])


@njit(parallel=True, cache=True)
def analog_conv_forward(x, wt, bounds, gain, step, bias, periph, geom, aff, relu, pool, cg,
                        cw, out):  # pragma: no cover - compiled
    """Fused analog convolution for ``S`` device samples, vectorised over output channels.

    Same maths as :func:`analog_conv_positions` (a per-position field, its DAC scale, the
    bit-line sums in ascending ``k``, the ADC per tile column, the same optional affine,
    ReLU and max-pool), for layers with few output positions and many channels.

    Args:
        x: Input, float32 ``(1, B, C, H, W)``, unpadded (shared by the samples).
        wt: Effective weights, transposed, float32 ``(S, K, O)``.
        bounds: Row-tile boundaries along ``K``, int64 ``(n_row_tiles + 1,)``.
        gain: float64 ``(n_row_tiles, O)`` ADC gain.
        step: float64 ``(n_row_tiles, O)`` ADC step.
        bias: Digital bias, float32 ``(O,)``.
        periph: float64 ``(4,)`` converter constants.
        geom: int64 ``(10,)`` geometry.
        aff: float64 ``(2, O)`` affine after the bias, or ``(2, 0)``: none.
        relu: 1 = apply ``max(y, 0)``.
        pool: int64 ``(8,)`` max-pool; ``kh == 0``: none.
        cg: int64 ``(8,)`` digital correction geometry; ``cg[6] == 0``: none.
        cw: float32 packed correction weights (:func:`correct_write`).
        out: Output, float32 ``(S, B, O, Hq, Wq)``, written in place.
    """
    n_b = x.shape[1]
    n_s, n_k, n_o = wt.shape
    ho, wo = geom[6], geom[7]
    n_l = ho * wo
    n_t = bounds.shape[0] - 1
    adc_levels = periph[3]
    n_blocks = (n_b + _BLOCK - 1) // _BLOCK
    for blk in prange(n_blocks):        # scratch allocated once per block of images
        pm = np.empty((n_k, n_l), dtype=np.float32)
        sc = np.empty(n_l, dtype=np.float64)
        sd = np.empty(n_l, dtype=np.float64)
        inv = np.empty(n_l, dtype=np.float64)
        amax = np.empty((x.shape[3], x.shape[4]), dtype=np.float32)
        acc = np.empty(n_o, dtype=np.float32)
        tot = np.empty(n_o, dtype=np.float64)
        ys = np.empty((n_s, n_o, n_l), dtype=np.float32)
        nz = np.empty((n_t, n_k), dtype=np.int64)
        cnt = np.empty(n_t, dtype=np.int64)
        cxp, cacc, cp, ct, cgen, cz, cpart = _correction_scratch(x, cg, n_o, ho, wo)
        for b in range(blk * _BLOCK, min(n_b, (blk + 1) * _BLOCK)):
            _quantised_fields(x, 0, b, geom, periph, pm, sc, sd, inv, amax)
            if cg[6] > 0:
                _correction_input(x, 0, b, cg, cw, ho, wo, cp, cxp, cacc, ct)
            for lp in range(n_l):
                # the nonzero codes of each row tile, k ascending, without a branch per code
                # (post-ReLU inputs are about half zeros: a branch would mispredict); a zero
                # code adds nothing to a bit-line sum, so skipping them changes no result
                for t in range(n_t):
                    c = 0
                    for k in range(bounds[t], bounds[t + 1]):
                        nz[t, c] = k
                        c += pm[k, lp] != 0.0
                    cnt[t] = c
                for smp in range(n_s):
                    tot[:] = 0.0
                    for t in range(n_t):
                        acc[:] = 0.0
                        for q in range(cnt[t]):
                            k = nz[t, q]
                            v = pm[k, lp]
                            for o in range(n_o):
                                acc[o] += v * wt[smp, k, o]
                        for o in range(n_o):
                            tot[o] += _adc(acc[o], gain[t, o], step[t, o], adc_levels)
                    for o in range(n_o):
                        ys[smp, o, lp] = np.float32(tot[o] * sc[lp] + bias[o])
            for smp in range(n_s):
                if cg[6] > 0:
                    correct_write(ys[smp], x.shape[2], cg, cw, ct, cgen, cz, cpart)
                    _post_write(cz, aff, relu, pool, ho, wo, out[smp, b])
                else:
                    _post_write(ys[smp], aff, relu, pool, ho, wo, out[smp, b])


@njit(parallel=True, cache=True)
def relu_maxpool(x, relu, pool, out):  # pragma: no cover - compiled
    """``nn.ReLU`` and/or ``nn.MaxPool2d`` of a digital tensor, bit for bit (parallel).

    Args:
        x: float32 ``(N, C, H, W)``.
        relu: 1 = apply ``max(x, 0)`` first (NaN kept).
        pool: int64 ``(8,)`` max-pool ``(kh, kw, sh, sw, ph, pw, dh, dw)``; ``kh == 0``: none.
        out: float32 ``(N, C, Hq, Wq)``.
    """
    n, c, h, w = x.shape
    no_aff = np.zeros((2, 0))
    flat = x.reshape(n, c, h * w)           # a view (x is C-contiguous)
    direct = pool[0] == 2 and pool[1] == 2 and pool[4] == 0 and pool[5] == 0
    for item in prange(n):
        if direct:
            _relu_pool2(flat[item], relu, pool, w, out[item])
        else:
            y = flat[item].copy()           # _post_write works in place
            _post_write(y, no_aff, relu, pool, h, w, out[item])


@njit(cache=True)
def dac_rows(x, periph, codes, scales):  # pragma: no cover - compiled
    """DAC of a batch of input vectors (xbar's rule), for the BLAS path of linear layers.

    Serial on purpose: the work is small and a parallel region's wake-up costs more.

    Args:
        x: float32 ``(N, K)`` inputs.
        periph: float64 ``(4,)`` converter constants (module docstring).
        codes: float32 ``(N, K)`` output: integer codes (or ``x / s``, or ``x`` if mode 0).
        scales: float64 ``(N,)`` output: ``s`` per vector (1 if mode 0).
    """
    n_k = x.shape[1]
    dac_mode, dac_levels, input_range = periph[0], periph[1], periph[2]
    for b in range(x.shape[0]):
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
            codes[b, k] = (np.float32(dac_code(np.float64(x[b, k]), s, dac_levels)) if s > 0
                           else 0.0)


@njit(cache=True)
def adc_rows(p, gain, step, adc_levels, scales, bias, out):  # pragma: no cover - compiled
    """ADC per tile column, digital sum over row tiles, rescale and bias (xbar's rule).

    ``out[n, o] = s_n * sum_t step[t, o] * clip(rint(p[t, n, o] * gain[t, o]), -L, L) + b[o]``
    (``adc_levels == 0``: no rounding or clipping, ``gain`` ignored).

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
    for n in range(n_n):
        s = scales[n]
        for o in range(n_o):
            acc = 0.0
            for t in range(n_t):
                acc += _adc(p[t, n, o], gain[t, o], step[t, o], adc_levels)
            out[n, o] = np.float32(acc * s + bias[o])


@njit(cache=True)
def _dot_rows(w, o, c0, n_c, a, acc):  # pragma: no cover - compiled
    """``acc[l] += sum_c w[o, c0 + c] * a[c, l]``, ``c`` ascending, float32, 4 rows a pass.

    Each position's sum is still added one product at a time in ascending ``c`` (one
    rounding per product and per add), as if one row were added per pass.
    """
    n_l = a.shape[1]
    c4 = n_c // 4 * 4
    for c in range(0, c4, 4):
        w0, w1, w2, w3 = w[o, c0 + c], w[o, c0 + c + 1], w[o, c0 + c + 2], w[o, c0 + c + 3]
        r0, r1, r2, r3 = a[c], a[c + 1], a[c + 2], a[c + 3]
        for lp in range(n_l):
            acc[lp] = (((acc[lp] + w0 * r0[lp]) + w1 * r1[lp]) + w2 * r2[lp]) + w3 * r3[lp]
    for c in range(c4, n_c):
        wv = w[o, c0 + c]
        r = a[c]
        for lp in range(n_l):
            acc[lp] += wv * r[lp]


@njit(cache=True)
def _dot_block(w, o0, nb, c0, n_c, a, acc):  # pragma: no cover - compiled
    """:func:`_dot_rows` for outputs ``o0 .. o0 + nb - 1`` into ``acc[0 .. nb - 1]``.

    Four outputs and four rows of ``a`` per pass over the positions when ``nb == 4`` (the
    inputs read once for four outputs); the same sums, in the same order, as
    :func:`_dot_rows` per output.
    """
    if nb != 4:
        for u in range(nb):
            _dot_rows(w, o0 + u, c0, n_c, a, acc[u])
        return
    n_l = a.shape[1]
    c4 = n_c // 4 * 4
    q0, q1, q2, q3 = acc[0], acc[1], acc[2], acc[3]
    for c in range(0, c4, 4):
        k = c0 + c
        a0, a1, a2, a3 = w[o0, k], w[o0, k + 1], w[o0, k + 2], w[o0, k + 3]
        b0, b1, b2, b3 = w[o0 + 1, k], w[o0 + 1, k + 1], w[o0 + 1, k + 2], w[o0 + 1, k + 3]
        d0, d1, d2, d3 = w[o0 + 2, k], w[o0 + 2, k + 1], w[o0 + 2, k + 2], w[o0 + 2, k + 3]
        e0, e1, e2, e3 = w[o0 + 3, k], w[o0 + 3, k + 1], w[o0 + 3, k + 2], w[o0 + 3, k + 3]
        r0, r1, r2, r3 = a[c], a[c + 1], a[c + 2], a[c + 3]
        for lp in range(n_l):
            va, vb, vc, vd = r0[lp], r1[lp], r2[lp], r3[lp]
            q0[lp] = (((q0[lp] + a0 * va) + a1 * vb) + a2 * vc) + a3 * vd
            q1[lp] = (((q1[lp] + b0 * va) + b1 * vb) + b2 * vc) + b3 * vd
            q2[lp] = (((q2[lp] + d0 * va) + d1 * vb) + d2 * vc) + d3 * vd
            q3[lp] = (((q3[lp] + e0 * va) + e1 * vb) + e2 * vc) + e3 * vd
    for c in range(c4, n_c):
        k = c0 + c
        a0, b0, d0, e0 = w[o0, k], w[o0 + 1, k], w[o0 + 2, k], w[o0 + 3, k]
        r0 = a[c]
        for lp in range(n_l):
            v = r0[lp]
            q0[lp] += a0 * v
            q1[lp] += b0 * v
            q2[lp] += d0 * v
            q3[lp] += e0 * v


@njit(cache=True)
def _window_means(x, xs, b, cg, ho, wo, pooled, xp, accf):  # pragma: no cover - compiled
    """``avg_pool2d(x[xs, b], (kh, kw), (sh, sw), (ph, pw), count_include_pad=True)``.

    torch's CPU kernel bit for bit: per output a float32 sum from 0 over the window's taps
    inside the input in ``(i, j)`` order (taps outside add nothing: ``s + 0 == s`` for a sum
    that started at +0), divided by ``kh * kw``. Accumulated tap by tap (the same order per
    output). Stride 1: the channel is copied into a zero-padded flat ``xp``
    ``((H + 2 ph) * (W + 2 pw),)`` and each tap is one contiguous add over ``accf``
    ``(ho * (W + 2 pw),)`` (output rows at the padded width; the extra columns are dropped).
    Other strides: tap by tap over output rows, indices as in :func:`_gather_fields`. ``cg``
    is the correction's geometry (:func:`correct_write`); ``ho, wo`` the pooled size.
    """
    kh, kw, sh, sw, pt, pl = cg[0], cg[1], cg[2], cg[3], cg[4], cg[5]
    n_h, n_w = x.shape[3], x.shape[4]
    div = np.float32(kh * kw)
    if sh == 1 and sw == 1:
        wp = n_w + 2 * pl
        n_q = ho * wp - (kw - 1)        # the last row's dropped columns would read past xp
        for c in range(x.shape[2]):
            xc = x[xs, b, c]
            xp[:] = 0.0
            for r in range(n_h):
                q0 = (r + pt) * wp + pl
                xr = xc[r]
                for col in range(n_w):
                    xp[np.uint64(q0 + col)] = xr[col]
            accf[:] = 0.0
            for i in range(kh):
                for j in range(kw):
                    off = i * wp + j
                    for q in range(n_q):
                        accf[q] += xp[np.uint64(q + off)]
            pc = pooled[c]
            for oh in range(ho):
                for ow in range(wo):
                    pc[np.uint64(oh * wo + ow)] = accf[np.uint64(oh * wp + ow)] / div
        return
    for c in range(x.shape[2]):
        xc = x[xs, b, c]
        pc = pooled[c]
        pc[:] = 0.0
        for i in range(kh):
            for j in range(kw):
                c0 = j - pl
                lo, hi = _col_range(c0, sw, n_w, wo)
                for oh in range(ho):
                    r = oh * sh + i - pt
                    if r < 0 or r >= n_h:
                        continue
                    lp0 = oh * wo
                    xr = xc[r]
                    if sw == 1:
                        for ow in range(lo, hi):
                            pc[np.uint64(lp0 + ow)] += xr[np.uint64(c0 + ow)]
                    else:
                        for ow in range(lo, hi):
                            pc[np.uint64(lp0 + ow)] += xr[np.uint64(c0 + ow * sw)]
        for lp in range(pc.shape[0]):
            pc[lp] = pc[lp] / div


@njit(cache=True)
def _correction_input(x, xs, b, cg, cw, ho, wo, pooled, xp, accf,
                      t):  # pragma: no cover - compiled
    """The sample-independent part of a correction: ``t = bg + Wg[:, :C] @ avg_pool(x)``.

    ``pooled`` ``(C, L)``, ``xp``, ``accf`` (:func:`_window_means`) are scratch, ``t``
    ``(M, L)`` the output (:func:`correct_write`).
    """
    n_c, n_m, n_n = x.shape[2], cg[6], cg[7]
    _window_means(x, xs, b, cg, ho, wo, pooled, xp, accf)
    wg = cw[:n_m * (n_c + n_n)].reshape(n_m, n_c + n_n)
    bg = cw[n_m * (n_c + n_n):n_m * (n_c + n_n + 1)]
    t[:, :] = 0.0
    for o0 in range(0, n_m, 4):
        _dot_block(wg, o0, min(4, n_m - o0), 0, n_c, pooled, t[o0:])
    for o in range(n_m):
        to = t[o]
        bo = bg[o]
        for lp in range(to.shape[0]):
            to[lp] = bo + to[lp]


@njit(cache=True)
def correct_write(y, n_c, cg, cw, t, g, z, part):  # pragma: no cover - compiled
    """A digital 1x1 correction of a conv's output ``y`` ``(N, L)`` into ``z`` ``(N, L)``.

    ``g = max(t + Wg[:, C:] @ y, 0)`` with ``t`` from :func:`_correction_input`, then
    ``z = (bc + Wc[:, :N] @ y) + Wc[:, N:] @ g``: a 1x1 conv of each channel concat, each part
    summed in ascending channel order (:func:`_dot_rows`) and the parts added as torch's two
    ``baddbmm`` calls add them (bias + first part, then + second part), float32 throughout;
    torch's BLAS sums each part in another order, so the two agree to float32 rounding.

    Args:
        y: The conv output of one image and sample, float32 ``(N, L)``.
        n_c: Input channels ``C`` of the conv.
        cg: int64 ``(8,)`` ``(kh, kw, sh, sw, ph, pw, M, N)``: the average-pool window over
            the conv's input, the generator's filters ``M`` (0: no correction) and ``N``.
        cw: float32 packed ``[Wg (M, C + N), bg (M,), Wc (N, N + M), bc (N,)]``, row-major.
        t: float32 ``(M, L)`` from :func:`_correction_input`.
        g: float32 ``(M, L)`` scratch.
        z: float32 ``(N, L)`` output.
        part: float32 ``(4, L)`` scratch.
    """
    n_m, n_n = cg[6], cg[7]
    n_l = y.shape[1]
    o1 = n_m * (n_c + n_n + 1)
    wg = cw[:n_m * (n_c + n_n)].reshape(n_m, n_c + n_n)
    wc = cw[o1:o1 + n_n * (n_n + n_m)].reshape(n_n, n_n + n_m)
    bc = cw[o1 + n_n * (n_n + n_m):o1 + n_n * (n_n + n_m + 1)]
    zero = np.float32(0.0)
    for o0 in range(0, n_m, 4):
        nb = min(4, n_m - o0)
        part[:, :] = 0.0
        _dot_block(wg, o0, nb, n_c, n_n, y, part)
        for u in range(nb):
            go, to, pu = g[o0 + u], t[o0 + u], part[u]
            for lp in range(n_l):
                v = to[lp] + pu[lp]
                go[lp] = zero if v < 0 else v       # NaN kept, as torch's relu
    z[:, :] = 0.0
    for o0 in range(0, n_n, 4):
        nb = min(4, n_n - o0)
        _dot_block(wc, o0, nb, 0, n_n, y, z[o0:])
        part[:, :] = 0.0
        _dot_block(wc, o0, nb, n_n, n_m, g, part)
        for u in range(nb):
            zo, pu = z[o0 + u], part[u]
            bo = bc[o0 + u]
            for lp in range(n_l):
                zo[lp] = (bo + zo[lp]) + pu[lp]
