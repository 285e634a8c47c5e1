"""The receptive fields of the fused conv kernels and their DAC codes, xbar's rule bit for bit.

Per image, :func:`_quantised_fields` fills the conv kernels' field block ``pm`` ``(K, L)``
(``K = C*kh*kw`` taps in ``(c, i, j)`` order, ``L = Ho*Wo`` output positions) in three passes:

1. :func:`_pad_image`: the image into a zero-padded copy ``xp`` ``(C, Hp, Wp)`` (the padding
   at the top and left from ``geom``, whatever the output size implies at the bottom and
   right), and the channel-wise ``max |x|`` per pixel into ``amax`` ``(Hp, Wp)``; the
   border of both is zeroed once per scratch block, so no tap needs a bounds test.
2. :func:`_window_scales`: each position's DAC scale ``s = max |x|`` over its receptive field,
   as a separable maximum (over the ``kw`` columns of each padded row, then over the ``kh``
   rows): max is exact, so this equals the maximum over the gathered field.
3. :func:`_gather`: every tap's code ``rint(x * (L / s))`` (:func:`_tap`), read from ``xp``
   row by row (contiguous runs of ``Wo`` positions), or for narrower outputs in one long loop
   per tap (over whole padded rows, or through a per-layer index table).

``rint(x * (L / s))`` instead of xbar's ``rint(x / s * L)``: both are within two roundings
(relative ``2**-53`` each) of ``x L / s``, so they differ by at most ``4.5e-16 * L``, and their
codes are equal unless ``x * (L / s)`` lies within ``_TIE_MARGIN * L`` (over 200 times that)
of a half-integer. Such taps are counted; with any, or with a NaN / infinite input (a maximum
with NaN depends on the order), the fields are gathered raw and quantised as written
(:func:`_dac_fields_exact`, a division per input). Every path gives xbar's codes bit for bit.

``periph`` and ``geom`` as in :mod:`mapping.kernels`. Numba keys a cached kernel to its own
file; :mod:`mapping.kernel_cache` empties the callers' caches when this file changes.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from xbar.kernels import dac_code

#: Distance to a rounding tie, per DAC level, below which the fast DAC redoes a field exactly.
_TIE_MARGIN = 1e-13
#: Largest finite float32.
_F32_MAX = 3.4028234663852886e38
#: Narrowest output (``Wo``) gathered row by row; narrower ones use the index table.
_ROW_MIN_WIDTH = 8
#: Outputs narrower than this (and at least :data:`_ROW_MIN_WIDTH`) at unit stride are coded
#: over whole padded rows, then copied (:func:`_gather`).
_WIDE_MAX_WIDTH = 16
#: :func:`_gather_loop`'s answers: index table, padded rows, row by row.
_TABLE, _PADDED_ROWS, _ROWS = 0, 1, 2


@njit(cache=True)
def padded_size(geom):  # pragma: no cover - compiled
    """``(Hp, Wp)``: the rows and columns of the input the taps of ``geom`` span, padding in."""
    kh, kw, sh, sw, dh, dw, ho, wo = (geom[0], geom[1], geom[2], geom[3], geom[4], geom[5],
                                      geom[6], geom[7])
    return (ho - 1) * sh + (kh - 1) * dh + 1, (wo - 1) * sw + (kw - 1) * dw + 1


@njit(cache=True)
def tap_tables(geom, n_c):  # pragma: no cover - compiled
    """Flat offsets into ``xp``: ``kbase[k]`` of tap ``k = (c, i, j)``, ``off[lp]`` of position.

    Tap ``k`` of position ``lp`` reads ``xp.ravel()[kbase[k] + off[lp]]``.
    """
    kh, kw, sh, sw, dh, dw, ho, wo = (geom[0], geom[1], geom[2], geom[3], geom[4], geom[5],
                                      geom[6], geom[7])
    hp, wp = padded_size(geom)
    kbase = np.empty(n_c * kh * kw, np.int64)
    for c in range(n_c):
        for i in range(kh):
            for j in range(kw):
                kbase[(c * kh + i) * kw + j] = (c * hp + i * dh) * wp + j * dw
    off = np.empty(ho * wo, np.int64)
    for oh in range(ho):
        for ow in range(wo):
            off[oh * wo + ow] = oh * sh * wp + ow * sw
    return kbase, off


@njit(cache=True)
def field_scratch(n_c, geom):  # pragma: no cover - compiled
    """Per-block scratch of :func:`_quantised_fields`, zeroed.

    ``(xp, amax, rowmax, inv_wide, sd_wide, wide)``: the padded image, its channel max, the
    row maxima of :func:`_window_scales`, and the padded-row ``1 / s``, ``s`` and codes of
    :func:`_gather` (``sd_wide`` 1, its unused columns never written).
    """
    hp, wp = padded_size(geom)
    n_wide = geom[6] * wp
    return (np.zeros((n_c, hp, wp), np.float32), np.zeros((hp, wp), np.float32),
            np.zeros((hp, geom[7]), np.float32), np.zeros(n_wide), np.ones(n_wide),
            np.zeros(n_wide, np.float32))


@njit(cache=True)
def _pad_image(x, xs, b, geom, xp, amax):  # pragma: no cover - compiled
    """Image ``x[xs, b]`` into the interior of ``xp`` and its channel max ``|x|`` into ``amax``.

    The interior (rows ``pt ..``, columns ``pl ..``) is the same for every image of a layer,
    so the zero border written by :func:`field_scratch` stays. Input rows or columns no tap
    reaches are not copied. Returns the number of NaN or infinite inputs copied.
    """
    pt, pl = geom[8], geom[9]
    hp, wp = xp.shape[1], xp.shape[2]
    n_r = min(x.shape[3], hp - pt)
    n_w = min(x.shape[4], wp - pl)
    nan = 0
    for r in range(n_r):
        ar = amax[r + pt]
        for col in range(n_w):
            ar[np.uint64(col + pl)] = 0.0
    for c in range(x.shape[2]):
        for r in range(n_r):
            xr = x[xs, b, c, r]
            pr = xp[c, r + pt]
            ar = amax[r + pt]
            for col in range(n_w):          # indices cast to uint64: no negative-index fix-up
                v = xr[np.uint64(col)]
                a = abs(v)
                nan += not a <= _F32_MAX     # NaN or inf
                pr[np.uint64(col + pl)] = v
                ar[np.uint64(col + pl)] = max(ar[np.uint64(col + pl)], a)
    return nan


@njit(cache=True)
def _window_scales(amax, geom, rowmax, sc):  # pragma: no cover - compiled
    """``sc[lp]`` = ``max |x|`` over position ``lp``'s field, from ``amax``, separably.

    ``rowmax[r, ow]`` = the maximum over the ``kw`` taps of padded row ``r``, then ``sc`` the
    maximum of ``rowmax`` over the ``kh`` rows of each position (float32, then float64).
    """
    kh, kw, sh, sw, dh, dw, ho, wo = (geom[0], geom[1], geom[2], geom[3], geom[4], geom[5],
                                      geom[6], geom[7])
    for r in range(amax.shape[0]):
        ar, rr = amax[r], rowmax[r]
        for ow in range(wo):
            rr[np.uint64(ow)] = ar[np.uint64(ow * sw)]
        for j in range(1, kw):
            for ow in range(wo):
                rr[np.uint64(ow)] = max(rr[np.uint64(ow)], ar[np.uint64(ow * sw + j * dw)])
    _rows_max(rowmax, kh, sh, dh, ho, wo, sc)


@njit(cache=True)
def _rows_max(rowmax, kh, sh, dh, ho, n, sc):  # pragma: no cover - compiled
    """``sc[oh * n + q] = max_i rowmax[oh * sh + i * dh, q]`` over ``i < kh`` (float64)."""
    for oh in range(ho):
        s0 = oh * n
        r0 = rowmax[oh * sh]
        for q in range(n):
            sc[np.uint64(s0 + q)] = r0[np.uint64(q)]
        for i in range(1, kh):
            ri = rowmax[oh * sh + i * dh]
            for q in range(n):
                p = np.uint64(s0 + q)
                sc[p] = max(sc[p], np.float64(ri[np.uint64(q)]))


@njit(cache=True, inline="always")
def _tap(v, inv, s, levels, mode, lim):  # pragma: no cover - compiled
    """One tap: ``(value, near tie)``. ``mode`` 0 raw, 1 code, 2 code of the clipped input.

    ``mode == 1`` when the scale is the field's own ``max |x|``: xbar's two clips are then
    no-ops (``|x / s * L| <= L`` exactly) and are skipped.
    """
    if mode == 0:
        return v, False
    t = np.float64(v)
    if mode == 2:
        t = min(max(t, -s), s)
    t = t * inv
    r = np.rint(t)
    near = abs(t - r) > lim
    if mode == 2:
        r = min(max(r, -levels), levels)
    return np.float32(r), near


@njit(cache=True)
def _gather(scratch, tables, geom, inv, sd, levels, mode, pm):  # pragma: no cover - compiled
    """Every field of the padded image into ``pm`` (``(K, L)``) through :func:`_tap`.

    Three loop orders, by output width ``Wo``, all with the same taps and results:

    * ``Wo <`` :data:`_ROW_MIN_WIDTH`: per tap, one loop over all ``L`` positions through the
      index table ``off``;
    * ``Wo <`` :data:`_WIDE_MAX_WIDTH` at unit stride: per tap, one contiguous loop over the
      padded rows (``(Ho - 1) * Wp + Wo`` values, the ``Wp - Wo`` columns past each output
      row with ``1 / s = 0``: code 0, never a near tie), then the ``Wo`` real ones of each row
      copied into ``pm``;
    * otherwise row by row (``Wo`` contiguous positions at a time).

    A loop of fewer than 16 iterations does not reach the vectorised body, hence the first
    two. Returns the number of near ties (always 0 with ``mode == 0``).
    """
    xp, _, _, inv_wide, sd_wide, wide = scratch
    kbase, off = tables
    sh, sw, dh, dw, ho, wo = geom[2], geom[3], geom[4], geom[5], geom[6], geom[7]
    kh, kw = geom[0], geom[1]
    lim = 0.5 - _TIE_MARGIN * levels    # |t - rint(t)| <= 0.5; above lim: a near tie
    n_l = off.shape[0]
    xpf = xp.reshape(-1)
    near = 0
    loop = _gather_loop(geom, mode)
    if loop == _TABLE:
        for k in range(kbase.shape[0]):
            kb, pk = kbase[k], pm[k]
            for lp in range(n_l):
                v, nr = _tap(xpf[np.uint64(kb + off[lp])], inv[lp], sd[lp], levels, mode, lim)
                pk[lp] = v
                near += nr
        return near
    if loop == _PADDED_ROWS:
        wp = xp.shape[2]
        for oh in range(ho):
            for ow in range(wo):
                inv_wide[oh * wp + ow] = inv[oh * wo + ow]
                sd_wide[oh * wp + ow] = sd[oh * wo + ow]
        n_wide = (ho - 1) * wp + wo
        for k in range(kbase.shape[0]):
            kb, pk = kbase[k], pm[k]
            for q in range(n_wide):
                v, nr = _tap(xpf[np.uint64(kb + q)], inv_wide[q], sd_wide[q], levels, mode, lim)
                wide[q] = v
                near += nr
            for oh in range(ho):
                for ow in range(wo):
                    pk[np.uint64(oh * wo + ow)] = wide[np.uint64(oh * wp + ow)]
        return near
    for c in range(xp.shape[0]):
        for i in range(kh):
            for j in range(kw):
                pk = pm[(c * kh + i) * kw + j]
                for oh in range(ho):
                    xr = xp[c, oh * sh + i * dh]
                    lp0, c0 = oh * wo, j * dw
                    for ow in range(wo):
                        lp = np.uint64(lp0 + ow)
                        v, nr = _tap(xr[np.uint64(c0 + ow * sw)], inv[lp], sd[lp], levels,
                                     mode, lim)
                        pk[lp] = v
                        near += nr
    return near


@njit(cache=True)
def _gather_loop(geom, mode):  # pragma: no cover - compiled
    """The loop :func:`_gather` takes: :data:`_TABLE`, :data:`_PADDED_ROWS` or :data:`_ROWS`.

    The index table below :data:`_ROW_MIN_WIDTH` output columns; the padded rows below
    :data:`_WIDE_MAX_WIDTH` at unit stride with a DAC (``mode != 0``); else row by row.
    """
    wo = geom[7]
    if wo < _ROW_MIN_WIDTH:
        return _TABLE
    if mode != 0 and geom[2] == 1 and geom[3] == 1 and wo < _WIDE_MAX_WIDTH:
        return _PADDED_ROWS
    return _ROWS


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
    """DAC of every raw field in place with xbar's rule as written (a division per input)."""
    n_k, n_l = pm.shape
    _field_scales(pm, periph, sc, sd)
    levels = periph[1]
    for k in range(n_k):
        for lp in range(n_l):
            pm[k, lp] = np.float32(dac_code(np.float64(pm[k, lp]), sd[lp], levels))


@njit(cache=True)
def _divisors(sc, levels, sd, inv):  # pragma: no cover - compiled
    """Per position the DAC divisor ``sd = s`` and ``inv = levels / sd``.

    ``sd = 1`` where ``s == 0`` (an all-zero field, coded to 0).
    """
    for lp in range(sc.shape[0]):
        sd[lp] = sc[lp] if sc[lp] > 0 else 1.0
        inv[lp] = levels / sd[lp]


@njit(cache=True)
def _quantised_fields(x, xs, b, geom, periph, pm, sc, sd, inv, scratch,
                      tables):  # pragma: no cover - compiled
    """The receptive fields of image ``x[xs, b]``, DAC-quantised, into ``pm`` ``(K, L)``.

    ``sc`` gets each position's scale ``s`` (1 without a DAC, ``dac_mode == 0``, where ``pm``
    is left raw). ``scratch`` = :func:`field_scratch`, ``tables`` = :func:`tap_tables` of
    this layer. A rounding DAC (``dac_levels > 0``) takes the fast multiply per input and
    falls back to the exact division near a tie or with a non-finite input; an unrounded
    DAC divides as written (module docstring).
    """
    xp, amax, rowmax = scratch[0], scratch[1], scratch[2]
    nan = _pad_image(x, xs, b, geom, xp, amax)
    levels = periph[1]
    if periph[0] > 0 and levels > 0 and nan == 0:
        if periph[2] > 0:
            sc[:] = periph[2]
        else:
            _window_scales(amax, geom, rowmax, sc)
        _divisors(sc, levels, sd, inv)
        if _gather(scratch, tables, geom, inv, sd, levels, 1 + int(periph[2] > 0), pm) == 0:
            return
    _gather(scratch, tables, geom, inv, sd, levels, 0, pm)
    if periph[0] <= 0:
        sc[:] = 1.0
        return
    _dac_fields_exact(pm, periph, sc, sd)
