"""Fused analog conv kernels of the Monte-Carlo fast path (im2col + DAC + tiled MAC + ADC).

The conv kernels never materialise the im2col matrix: per image they gather the receptive
fields into a local block and DAC-quantise them once (:mod:`mapping.field_kernels`: xbar's
codes bit for bit, zero padding in a per-block padded copy) and multiply them with the
effective weights of ``S`` device samples (the Monte-Carlo samples share the input's
quantisation). Each can apply a folded batch-norm affine, a ReLU and a max-pool to its
output (:mod:`mapping.postop_kernels`). :func:`analog_conv_positions` vectorises over output
positions, :func:`analog_conv_forward` over output channels (deep layers with few
positions), :func:`analog_conv_interleaved` over the positions of a block of images
interleaved (outputs at most 16 wide, :mod:`mapping.field_blocks`);
:func:`mapping.fastpath.conv_kernel` picks one. Each can also apply a digital 1x1
correction of its output before the ReLU / max-pool (:mod:`mapping.correction_kernels`,
:mod:`mapping.correction`): its input part (the receptive average pool of the conv's input)
once per image, the rest per sample. Each bit-line sum goes through the ADC rule of
:mod:`mapping.converter_kernels`, which also holds the row-wise DAC / ADC of linear layers.

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
Numba keys a cached kernel to this file only; :mod:`mapping.kernel_cache` empties these
kernels' caches when a kernel they call from another module changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .converter_kernels import _adc
from .correction_kernels import (_block_input, _correction_input, _correction_scratch,
                                 correct_write, shares_conv_window)
from .field_blocks import block_row, block_scratch, quantised_block
from .field_kernels import _quantised_fields, field_scratch, tap_tables
from .postop_kernels import _post_write


#: Images per parallel work item of the conv kernel (scratch arrays allocated once each).
_BLOCK = 16


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
def _mac_codes(pm, wt, smp, lp, ks, n_q, acc):  # pragma: no cover - compiled
    """``acc[o] += pm[k, lp] * W[k, o]`` over the taps ``ks[:n_q]`` in order, all channels.

    Four taps per pass over ``acc`` (each sum still in the order of ``ks``, one rounding per
    product and per add: the same result as one tap at a time).
    """
    n_o = acc.shape[0]
    q4 = n_q // 4 * 4
    for q in range(0, q4, 4):
        k0, k1, k2, k3 = ks[q], ks[q + 1], ks[q + 2], ks[q + 3]
        v0, v1, v2, v3 = pm[k0, lp], pm[k1, lp], pm[k2, lp], pm[k3, lp]
        w0, w1, w2, w3 = wt[smp, k0], wt[smp, k1], wt[smp, k2], wt[smp, k3]
        for o in range(n_o):
            acc[o] = (((acc[o] + v0 * w0[o]) + v1 * w1[o]) + v2 * w2[o]) + v3 * w3[o]
    for q in range(q4, n_q):
        k = ks[q]
        v, w = pm[k, lp], wt[smp, k]
        for o in range(n_o):
            acc[o] += v * w[o]


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


@njit(parallel=True, cache=True)
def analog_conv_positions(x, wt, bounds, gain, step, bias, periph, geom, aff, relu, pool, cg,
                          cw, out):  # pragma: no cover - compiled
    """Fused analog convolution vectorised over output positions, optional ReLU + max-pool.

    Per image, the receptive fields are gathered into a local ``(K, L)`` block (``L =
    Ho*Wo``) and DAC-quantised once (:func:`mapping.field_kernels._quantised_fields`). Then for
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
            none. With one, ``y`` is corrected before the affine, ReLU and max-pool; its
            input part is computed once per image for all samples.
        cw: float32 packed correction weights (:func:`correct_write`).
        out: float32 ``(S, B, O, Hq, Wq)``, written in place (``Hq, Wq = ho, wo`` without pool).
    """
    n_sx, n_b = x.shape[0], x.shape[1]
    n_s, n_k, n_o = wt.shape
    ho, wo = geom[6], geom[7]
    n_l = ho * wo
    n_items = n_sx * n_b
    n_blocks = (n_items + _BLOCK - 1) // _BLOCK
    tables = tap_tables(geom, x.shape[2])
    for blk in prange(n_blocks):        # scratch allocated once per block of images
        pm = np.empty((n_k, n_l), dtype=np.float32)
        sc = np.empty(n_l, dtype=np.float64)
        sd = np.empty(n_l, dtype=np.float64)
        inv = np.empty(n_l, dtype=np.float64)
        scratch = field_scratch(x.shape[2], geom)
        acc = np.empty((4, n_l), dtype=np.float32)
        tot = np.empty((4, n_l), dtype=np.float64)
        y = np.empty((n_o, n_l), dtype=np.float32)
        cxp, cacc, cp, ct, cgen, cz, cpart = _correction_scratch(x, cg, n_o, ho, wo)
        for idx in range(blk * _BLOCK, min(n_items, (blk + 1) * _BLOCK)):
            xs = idx // n_b
            b = idx - xs * n_b
            _quantised_fields(x, xs, b, geom, periph, pm, sc, sd, inv, scratch, tables)
            if cg[6] > 0:
                _correction_input(x, xs, b, cg, cw, ho, wo, cp, cxp, cacc, ct, cpart)
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
def analog_conv_interleaved(x, wt, bounds, gain, step, bias, periph, geom, aff, relu, pool,
                            cg, cw, out, nb):  # pragma: no cover - compiled
    """:func:`analog_conv_positions` on blocks of ``nb`` images interleaved (narrow outputs).

    The same maths, bit for bit: per block, the fields of ``nb`` images are quantised into
    one ``(K, L * nb)`` block, position-major (:func:`mapping.field_blocks.quantised_block`;
    rows padded to :func:`~mapping.field_blocks.block_row`), so every loop over positions
    runs ``L * nb`` long. Per sample, the bit-line sums and the ADC of the whole block
    (:func:`_conv_sample`) and a digital correction of it (:func:`correct_write`: each
    position's column on its own, so the same values as per image; its input part once per
    block from the padded images, :func:`mapping.correction_kernels._block_input`, where the
    pool window is the conv's, else per image), then each image's
    output is taken out of the block and post-processed as in
    :func:`analog_conv_positions`.

    Arguments as :func:`analog_conv_positions` (``geom`` with unit column stride), and ``nb``
    the images per block, :func:`mapping.field_blocks.block_images` (>= 1).
    """
    n_sx, n_b = x.shape[0], x.shape[1]
    n_s, n_k, n_o = wt.shape
    ho, wo = geom[6], geom[7]
    n_l = ho * wo
    n_g = (n_b + nb - 1) // nb                  # blocks per input sample
    per = max(1, _BLOCK // nb)                  # blocks per parallel work item
    n_items = n_sx * n_g
    tables = tap_tables(geom, x.shape[2])
    n_row = block_row(n_l * nb)
    shared = shares_conv_window(geom, cg)
    for w in prange((n_items + per - 1) // per):
        pm = np.zeros((n_k, n_row), dtype=np.float32)    # columns past L * nb stay 0
        sc = np.ones(n_row, dtype=np.float64)
        inv = np.empty(n_row, dtype=np.float64)
        scratch = block_scratch(x.shape[2], n_k, geom, nb)
        acc = np.empty((4, n_row), dtype=np.float32)
        tot = np.empty((4, n_row), dtype=np.float64)
        y = np.empty((n_o, n_row), dtype=np.float32)
        y1 = np.empty((n_o, n_l), dtype=np.float32)
        # a correction runs on the whole block too; its input part from the block's padded
        # images where the pool window is the conv's, else per image, interleaved
        cxp, cacc, cp, ct, _, _, cpart = _correction_scratch(x, cg, n_o, ho, wo)
        n_m, r_c = cg[6], n_row if cg[6] > 0 else 0
        n_pc = x.shape[2] if shared else 0
        pooled_b = np.zeros((n_pc, n_row), dtype=np.float32)
        accf_b = np.empty(ho * scratch[0].shape[2] if shared else 0, dtype=np.float32)
        tb = np.zeros((n_m, r_c), dtype=np.float32)
        gb = np.empty((n_m, r_c), dtype=np.float32)
        zb = np.empty((n_o if n_m > 0 else 0, r_c), dtype=np.float32)
        pb = np.zeros((5, r_c), dtype=np.float32)      # row 4 stays 0 (correct_write)
        for item in range(w * per, min(n_items, (w + 1) * per)):
            xs = item // n_g
            b0 = (item - xs * n_g) * nb
            n_real = min(nb, n_b - b0)
            quantised_block(x, xs, b0, nb, geom, periph, pm, sc, inv, scratch, tables)
            if shared:
                _block_input(scratch[0], nb, cg, cw, ho, wo, pooled_b, accf_b, tb, pb)
            for bb in range(n_real if n_m > 0 and not shared else 0):
                _correction_input(x, xs, b0 + bb, cg, cw, ho, wo, cp, cxp, cacc, ct, cpart)
                for m in range(n_m):
                    for lp in range(n_l):
                        tb[m, lp * nb + bb] = ct[m, lp]
            s_lo = 0 if n_sx == 1 else xs
            s_hi = n_s if n_sx == 1 else xs + 1
            for smp in range(s_lo, s_hi):
                _conv_sample(pm, wt, smp, bounds, gain, step, bias, periph[3], sc, acc, tot, y)
                if n_m > 0:
                    correct_write(y, x.shape[2], cg, cw, tb, gb, zb, pb)   # per column
                yz = zb if n_m > 0 else y
                for bb in range(n_real):
                    for o in range(n_o):
                        yo, y1o = yz[o], y1[o]
                        for lp in range(n_l):
                            y1o[lp] = yo[lp * nb + bb]
                    _post_write(y1, aff, relu, pool, ho, wo, out[smp, b0 + bb])


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
    tables = tap_tables(geom, x.shape[2])
    for blk in prange(n_blocks):        # scratch allocated once per block of images
        pm = np.empty((n_k, n_l), dtype=np.float32)
        sc = np.empty(n_l, dtype=np.float64)
        sd = np.empty(n_l, dtype=np.float64)
        inv = np.empty(n_l, dtype=np.float64)
        scratch = field_scratch(x.shape[2], geom)
        acc = np.empty(n_o, dtype=np.float32)
        tot = np.empty(n_o, dtype=np.float64)
        ys = np.empty((n_s, n_o, n_l), dtype=np.float32)
        nz = np.empty((n_t, n_k), dtype=np.int64)
        cnt = np.empty(n_t, dtype=np.int64)
        cxp, cacc, cp, ct, cgen, cz, cpart = _correction_scratch(x, cg, n_o, ho, wo)
        for b in range(blk * _BLOCK, min(n_b, (blk + 1) * _BLOCK)):
            _quantised_fields(x, 0, b, geom, periph, pm, sc, sd, inv, scratch, tables)
            if cg[6] > 0:
                _correction_input(x, 0, b, cg, cw, ho, wo, cp, cxp, cacc, ct, cpart)
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
                        _mac_codes(pm, wt, smp, lp, nz[t], cnt[t], acc)
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
