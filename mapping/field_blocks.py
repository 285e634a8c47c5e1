"""Receptive fields of a block of images, interleaved, and their DAC codes (xbar's rule).

The conv kernels of :mod:`mapping.kernels` for narrow outputs (``Wo`` at most
:data:`_MAX_WIDTH`) quantise ``nb`` images at once, interleaved position-major: column
``lp * nb + bb`` of the block ``pm`` ``(K, L * nb)`` is position ``lp`` of image ``bb``. A tap's
codes of one output row are then one contiguous run of ``Wo * nb`` values instead of ``Wo``
(loops under 16 iterations never reach the vectorised body), and the bit-line sums of all
``nb`` images run as one long row per tap (:func:`mapping.kernels._conv_sample`).

Per block, as :mod:`mapping.field_kernels` does per image:

1. :func:`_pad_block`: the images into a zero-padded copy ``xp`` ``(C, Hp, Wp * nb)`` (pixel
   ``(r, col)`` of image ``bb`` at ``xp[c, r, col * nb + bb]``) and the channel-wise ``max |x|``
   into ``amax`` ``(Hp, Wp * nb)``;
2. :func:`_block_scales`: each position's DAC scale, the maximum over its field, separably;
3. :func:`_gather_block`: every tap's code through :func:`mapping.field_kernels._tap` (the same
   arithmetic, so the same codes).

With a near tie or a non-finite input anywhere in the block, every image of the block is
quantised on its own by :func:`mapping.field_kernels._quantised_fields` (the exact rule) and
copied in. Codes and scales are therefore xbar's bit for bit, as per image.

Only unit column stride (``sw == 1``) keeps a run contiguous; :func:`block_images` answers 1
(per-image kernels) otherwise. ``periph`` and ``geom`` as in :mod:`mapping.kernels`.
Numba keys a cached kernel to its own file; :mod:`mapping.kernel_cache` empties the caches
of the kernels that call these when this file changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .field_kernels import (_F32_MAX, _TIE_MARGIN, _divisors, _quantised_fields, _rows_max,
                            _tap, field_scratch, padded_size)

#: Outputs wider than this run per image (their rows are long enough already).
_MAX_WIDTH = 16
#: Interleaved positions of one output row (``Wo * nb``) aimed at.
_ROW_RUN = 80
#: Most images per block.
_MAX_IMAGES = 32
#: Most float32 codes in one block (``K * L * nb``): 512 KiB, within a core's L2 cache.
_MAX_CODES = 131072


@njit(cache=True)
def block_images(geom, n_k, periph):  # pragma: no cover - compiled
    """Images ``nb`` per interleaved block for this layer, 1 for the per-image kernels.

    ``min(80 // Wo, 32, 131072 // (K * L))`` for unit column stride, ``Wo <= 16`` and a
    rounding DAC or none (an ADC without a DAC divides per input: per image); else 1.
    """
    wo, n_l = geom[7], geom[6] * geom[7]
    if geom[3] != 1 or wo > _MAX_WIDTH or (periph[0] > 0 and periph[1] <= 0):
        return 1
    return max(1, min(_ROW_RUN // wo, _MAX_IMAGES, _MAX_CODES // max(1, n_k * n_l)))


@njit(cache=True)
def block_row(n):  # pragma: no cover - compiled
    """Row length of a block's arrays for ``n = L * nb`` positions: ``n`` rounded up to 16.

    16 more when that is a multiple of 256 floats (1 KiB): rows a power-of-two apart share
    cache sets, and the four rows a bit-line pass reads evict each other.
    """
    r = (n + 15) // 16 * 16
    return r + 16 if r % 256 == 0 else r


@njit(cache=True)
def block_scratch(n_c, n_k, geom, nb):  # pragma: no cover - compiled
    """Per-block scratch of :func:`quantised_block`.

    ``(xp, amax, rowmax, sd, single)``: the padded, interleaved images (zero border), their
    channel max, the row maxima of :func:`_block_scales`, the divisor per position of the
    block row (:func:`block_row`), and ``single = (pm, sc, sd, inv, field_scratch)`` of one
    image for the exact fallback (:func:`mapping.field_kernels.field_scratch`).
    """
    hp, wp = padded_size(geom)
    n_l = geom[6] * geom[7]
    single = (np.empty((n_k, n_l), np.float32), np.empty(n_l), np.empty(n_l), np.empty(n_l),
              field_scratch(n_c, geom))
    return (np.zeros((n_c, hp, wp * nb), np.float32), np.zeros((hp, wp * nb), np.float32),
            np.zeros((hp, geom[7] * nb), np.float32), np.ones(block_row(n_l * nb)), single)


@njit(cache=True)
def _pad_block(x, xs, b0, nb, geom, xp, amax):  # pragma: no cover - compiled
    """Images ``x[xs, b0:b0 + nb]`` into the interior of ``xp``, their channel max into ``amax``.

    Lanes past the last image (a short last block) are zeroed. Returns the number of NaN or
    infinite inputs copied.
    """
    pt, pl = geom[8], geom[9]
    hp = xp.shape[1]
    wp = xp.shape[2] // nb
    n_r = min(x.shape[3], hp - pt)
    n_w = min(x.shape[4], wp - pl)
    n_real = min(nb, x.shape[1] - b0)
    q0, q1 = pl * nb, (pl + n_w) * nb
    for r in range(n_r):
        ar = amax[r + pt]
        for q in range(q0, q1):
            ar[np.uint64(q)] = 0.0
        if n_real < nb:
            for c in range(x.shape[2]):
                pr = xp[c, r + pt]
                for q in range(q0, q1):
                    pr[np.uint64(q)] = 0.0
    nan = 0
    for bb in range(n_real):
        for c in range(x.shape[2]):
            for r in range(n_r):
                xr = x[xs, b0 + bb, c, r]
                pr = xp[c, r + pt]
                ar = amax[r + pt]
                for col in range(n_w):
                    v = xr[np.uint64(col)]
                    a = abs(v)
                    nan += not a <= _F32_MAX     # NaN or inf
                    q = np.uint64((col + pl) * nb + bb)
                    pr[q] = v
                    ar[q] = max(ar[q], a)
    return nan


@njit(cache=True)
def _block_scales(amax, geom, nb, rowmax, sc):  # pragma: no cover - compiled
    """``sc[lp * nb + bb]`` = ``max |x|`` over the field of position ``lp`` of image ``bb``.

    The maximum over the ``kw`` columns of each padded row, then over the ``kh`` rows, as
    :func:`mapping.field_kernels._window_scales` (max is exact: the same values).
    """
    kh, kw, sh, dh, dw, ho, wo = geom[0], geom[1], geom[2], geom[4], geom[5], geom[6], geom[7]
    n = wo * nb
    for r in range(amax.shape[0]):
        ar, rr = amax[r], rowmax[r]
        for q in range(n):
            rr[np.uint64(q)] = ar[np.uint64(q)]
        for j in range(1, kw):
            o = j * dw * nb
            for q in range(n):
                rr[np.uint64(q)] = max(rr[np.uint64(q)], ar[np.uint64(o + q)])
    _rows_max(rowmax, kh, sh, dh, ho, n, sc)


@njit(cache=True)
def _gather_block(xp, geom, nb, inv, sd, levels, mode, pm):  # pragma: no cover - compiled
    """Every tap of the block into ``pm`` ``(K, L * nb)`` through ``_tap``; near ties counted.

    Tap ``k = (c, i, j)`` of output row ``oh`` reads the contiguous run of ``Wo * nb`` values
    of padded row ``oh * sh + i * dh`` starting at column ``j * dw`` (times ``nb``).
    """
    kh, kw, sh, dh, dw, ho, wo = geom[0], geom[1], geom[2], geom[4], geom[5], geom[6], geom[7]
    n = wo * nb
    lim = 0.5 - _TIE_MARGIN * levels    # |t - rint(t)| <= 0.5; above lim: a near tie
    near = 0
    for c in range(xp.shape[0]):
        for i in range(kh):
            for j in range(kw):
                pk = pm[(c * kh + i) * kw + j]
                o = j * dw * nb
                for oh in range(ho):
                    xr = xp[c, oh * sh + i * dh]
                    s0 = oh * n
                    for q in range(n):
                        p = np.uint64(s0 + q)
                        v, nr = _tap(xr[np.uint64(o + q)], inv[p], sd[p], levels, mode, lim)
                        pk[p] = v
                        near += nr
    return near


@njit(cache=True)
def _exact_block(x, xs, b0, nb, geom, periph, pm, sc, scratch,
                 tables):  # pragma: no cover - compiled
    """Every image of the block through the per-image rule, copied into the block layout."""
    pm1, sc1, sd1, inv1, fields = scratch[4]
    for bb in range(min(nb, x.shape[1] - b0)):
        _quantised_fields(x, xs, b0 + bb, geom, periph, pm1, sc1, sd1, inv1, fields, tables)
        for k in range(pm1.shape[0]):
            for lp in range(pm1.shape[1]):
                pm[k, lp * nb + bb] = pm1[k, lp]
        for lp in range(pm1.shape[1]):
            sc[lp * nb + bb] = sc1[lp]


@njit(cache=True)
def quantised_block(x, xs, b0, nb, geom, periph, pm, sc, inv, scratch,
                    tables):  # pragma: no cover - compiled
    """The receptive fields of images ``x[xs, b0:b0 + nb]``, DAC-quantised, into ``pm``.

    Args:
        x: Input, float32 ``(SX, B, C, H, W)``, unpadded.
        xs: The block's input sample (index into ``SX``).
        b0: The block's first image (``nb`` images, fewer at the end).
        nb: Images per block (:func:`block_images`).
        geom: int64 ``(10,)`` geometry (:mod:`mapping.kernels`).
        periph: float64 ``(4,)`` converter constants (:mod:`mapping.kernels`).
        pm: float32 ``(K, R)`` output codes (raw inputs without a DAC), interleaved, ``R =
            block_row(L * nb)``; the columns past ``L * nb`` are left as they are.
        sc: float64 ``(R,)`` output scale ``s`` per position (1 without a DAC).
        inv: float64 ``(R,)`` scratch (``levels / s``).
        scratch: :func:`block_scratch`.
        tables: :func:`mapping.field_kernels.tap_tables` of this layer (the exact fallback,
            one image at a time).
    """
    xp, amax, rowmax, sd = scratch[0], scratch[1], scratch[2], scratch[3]
    nan = _pad_block(x, xs, b0, nb, geom, xp, amax)
    levels = periph[1]
    if periph[0] <= 0:                  # no DAC: the raw inputs, unit scale
        _gather_block(xp, geom, nb, inv, sd, levels, 0, pm)
        sc[:] = 1.0
        return
    if nan == 0 and levels > 0:         # else (non-finite input, unrounded DAC): exact
        if periph[2] > 0:
            sc[:] = periph[2]
        else:
            _block_scales(amax, geom, nb, rowmax, sc)
        _divisors(sc, levels, sd, inv)
        if _gather_block(xp, geom, nb, inv, sd, levels, 1 + int(periph[2] > 0), pm) == 0:
            return
    _exact_block(x, xs, b0, nb, geom, periph, pm, sc, scratch, tables)
