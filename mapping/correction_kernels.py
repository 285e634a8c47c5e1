"""The fused compensator correction: a digital 1x1 correction of a conv kernel's output.

CorrectNet's compensated layers (:mod:`mapping.correction`) run inside the conv kernels of
:mod:`mapping.kernels` as a post-op before the ReLU / max-pool:
``z = Wc @ concat(y, g) + bc``, ``g = relu(Wg @ concat(p, y) + bg)``, ``p`` the average pool
of the conv's input over each output's window (:func:`_window_means`, torch's ``avg_pool2d``
bit for bit). The input part (:func:`_correction_input`) is computed once per image for all
the samples sharing it, the rest per sample (:func:`correct_write`); the 1x1 sums are
float32 in ascending channel order (:func:`_dot_block`). The interleaved kernel of narrow
layers computes the input part of a whole block of images at once from the conv's padded
copy of them (:func:`_block_input`) where the pool window is the conv's
(:func:`shares_conv_window`), the same values as per image.
:func:`_correction_scratch` allocates the scratch (empty without a correction).

``cg``: int64 ``(8,)`` ``(kh, kw, sh, sw, ph, pw, M, N)`` and ``cw`` the packed float32
weights: see :func:`correct_write`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .window_kernels import _col_range


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
            np.zeros((5, rows), dtype=np.float32))


@njit(cache=True)
def _weight(w, o, n_o, k, n_k):  # pragma: no cover - compiled
    """``w[o, k]``, or ``0`` past the ``n_o`` outputs or the ``n_k`` inputs of a block."""
    return w[o, k] if o < n_o and k < n_k else np.float32(0.0)


@njit(cache=True)
def _dot_block(w, o0, nb, c0, n_c, a, zero, acc):  # pragma: no cover - compiled
    """``acc[u, l] = sum_c w[o0 + u, c0 + c] * a[c, l]`` for ``u < nb <= 2``, float32.

    Each position's sum starts at ``+0`` and adds one product at a time in ascending ``c``
    (one rounding per product and per add): torch's order for one part of a 1x1 conv. Two
    outputs and four rows of ``a`` per pass over the positions: with their eight weights,
    four input rows and two sums, one pass fits AVX2's sixteen vector registers. Past the
    last row of ``a`` a pass reads ``zero`` (an all-zero row) with weight ``0``: it adds
    ``+0``, which leaves every sum as it is (a sum that starts at ``+0`` is never ``-0``);
    row 1 of ``acc`` (``(2, L)`` scratch) gets junk when ``nb == 1``.
    """
    n_l = a.shape[1]
    o_hi = o0 + nb
    k_hi = c0 + n_c
    q0, q1 = acc[0], acc[1]
    for c in range(0, n_c, 4):
        k = c0 + c
        a0, a1 = _weight(w, o0, o_hi, k, k_hi), _weight(w, o0, o_hi, k + 1, k_hi)
        a2, a3 = _weight(w, o0, o_hi, k + 2, k_hi), _weight(w, o0, o_hi, k + 3, k_hi)
        b0, b1 = _weight(w, o0 + 1, o_hi, k, k_hi), _weight(w, o0 + 1, o_hi, k + 1, k_hi)
        b2, b3 = _weight(w, o0 + 1, o_hi, k + 2, k_hi), _weight(w, o0 + 1, o_hi, k + 3, k_hi)
        r0 = a[c]
        r1 = a[c + 1] if c + 1 < n_c else zero
        r2 = a[c + 2] if c + 2 < n_c else zero
        r3 = a[c + 3] if c + 3 < n_c else zero
        if c == 0:
            s = np.float32(0.0)
            for lp in range(n_l):
                va, vb, vc, vd = r0[lp], r1[lp], r2[lp], r3[lp]
                q0[lp] = (((s + a0 * va) + a1 * vb) + a2 * vc) + a3 * vd
                q1[lp] = (((s + b0 * va) + b1 * vb) + b2 * vc) + b3 * vd
        else:
            for lp in range(n_l):
                va, vb, vc, vd = r0[lp], r1[lp], r2[lp], r3[lp]
                q0[lp] = (((q0[lp] + a0 * va) + a1 * vb) + a2 * vc) + a3 * vd
                q1[lp] = (((q1[lp] + b0 * va) + b1 * vb) + b2 * vc) + b3 * vd


@njit(cache=True)
def _flat_window_means(xc, wp, nb, kh, kw, ho, wo, accf, pc):  # pragma: no cover - compiled
    """Stride-1 window means of one zero-padded channel ``xc`` (flat, ``Wp`` columns).

    ``nb`` images interleaved (pixel ``(r, col)`` of image ``bb`` at ``(r * wp + col) * nb +
    bb``; 1: one image): each tap ``(i, j)`` in order is one contiguous add over ``accf``
    (``Ho * Wp * nb`` at least; output rows at the padded width), then output row ``oh`` of
    every image, ``Wo * nb`` values, divided by ``kh * kw`` into ``pc`` at ``oh * Wo * nb``.
    """
    div = np.float32(kh * kw)
    n_q = (ho * wp - (kw - 1)) * nb     # the last row's dropped columns would read past xp
    run = wo * nb
    accf[:] = 0.0
    for i in range(kh):
        for j in range(kw):
            off = (i * wp + j) * nb
            for q in range(n_q):
                accf[q] += xc[np.uint64(q + off)]
    for oh in range(ho):
        src, dst = oh * wp * nb, oh * run
        for e in range(run):
            pc[np.uint64(dst + e)] = accf[np.uint64(src + e)] / div


@njit(cache=True)
def _window_means(x, xs, b, cg, ho, wo, pooled, xp, accf):  # pragma: no cover - compiled
    """``avg_pool2d(x[xs, b], (kh, kw), (sh, sw), (ph, pw), count_include_pad=True)``.

    torch's CPU kernel bit for bit: per output a float32 sum from 0 over the window's taps
    inside the input in ``(i, j)`` order (taps outside add nothing: ``s + 0 == s`` for a sum
    that started at +0), divided by ``kh * kw``. Accumulated tap by tap (the same order per
    output). Stride 1: the channel is copied into a zero-padded flat ``xp``
    ``((H + 2 ph) * (W + 2 pw),)`` and each tap is one contiguous add over ``accf``
    ``(ho * (W + 2 pw),)`` (output rows at the padded width; the extra columns are dropped).
    Other strides: tap by tap over output rows, the taps inside the input from
    :func:`mapping.window_kernels._col_range` (uint64 indices, no negative-index fix-up). ``cg``
    is the correction's geometry (:func:`correct_write`); ``ho, wo`` the pooled size.
    """
    kh, kw, sh, sw, pt, pl = cg[0], cg[1], cg[2], cg[3], cg[4], cg[5]
    n_h, n_w = x.shape[3], x.shape[4]
    if sh == 1 and sw == 1:
        wp = n_w + 2 * pl
        for c in range(x.shape[2]):
            xc = x[xs, b, c]
            xp[:] = 0.0
            for r in range(n_h):
                q0 = (r + pt) * wp + pl
                xr = xc[r]
                for col in range(n_w):
                    xp[np.uint64(q0 + col)] = xr[col]
            _flat_window_means(xp, wp, 1, kh, kw, ho, wo, accf, pooled[c])
        return
    div = np.float32(kh * kw)
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
def _correction_input(x, xs, b, cg, cw, ho, wo, pooled, xp, accf, t,
                      part):  # pragma: no cover - compiled
    """The sample-independent part of a correction: ``t = bg + Wg[:, :C] @ avg_pool(x)``.

    ``pooled`` ``(C, L)``, ``xp``, ``accf`` (:func:`_window_means`) and ``part``
    (:func:`correct_write`) are scratch, ``t`` ``(M, L)`` the output.
    """
    _window_means(x, xs, b, cg, ho, wo, pooled, xp, accf)
    _input_part(cw, x.shape[2], cg[6], cg[7], pooled, t, part)


@njit(cache=True)
def shares_conv_window(geom, cg):  # pragma: no cover - compiled
    """True when the correction's pool window is the conv's, stride 1 and dilation 1.

    The pool can then read the conv's padded block of images
    (:func:`mapping.field_blocks.block_scratch`'s ``xp``): :func:`_block_input`.
    """
    return (cg[6] > 0 and cg[0] == geom[0] and cg[1] == geom[1] and cg[2] == 1 and cg[3] == 1
            and geom[2] == 1 and geom[3] == 1 and geom[4] == 1 and geom[5] == 1
            and cg[4] == geom[8] and cg[5] == geom[9])


@njit(cache=True)
def _block_input(xp, nb, cg, cw, ho, wo, pooled, accf, t,
                 part):  # pragma: no cover - compiled
    """:func:`_correction_input` of a block of ``nb`` images interleaved, from the conv's copy.

    ``xp`` ``(C, Hp, Wp * nb)``: the images zero-padded and interleaved (pixel ``(r, col)`` of
    image ``bb`` at ``xp[c, r, col * nb + bb]``, :func:`mapping.field_blocks.quantised_block`)
    with the pool's padding (:func:`shares_conv_window`). Per channel each tap is one add
    over ``accf`` ``(Ho * Wp * nb,)`` (:func:`_flat_window_means`, as per image with
    ``nb = 1``), ``nb`` times longer than per image, and output row
    ``oh`` of all the images is one run of ``Wo * nb`` values: ``pooled`` ``(C, R)`` and ``t``
    ``(M, R)`` column ``lp * nb + bb`` is position ``lp`` of image ``bb`` (``R >= L * nb``;
    the columns past ``L * nb`` of ``pooled`` are left as they are). Each value is the per
    image one bit for bit: the same taps in the same order, the same sums.
    """
    n_c = xp.shape[0]
    for c in range(n_c):
        _flat_window_means(xp[c].reshape(xp.shape[1] * xp.shape[2]), xp.shape[2] // nb, nb,
                           cg[0], cg[1], ho, wo, accf, pooled[c])
    _input_part(cw, n_c, cg[6], cg[7], pooled, t, part)


@njit(cache=True)
def _input_part(cw, n_c, n_m, n_n, pooled, t, part):  # pragma: no cover - compiled
    """``t = bg + Wg[:, :C] @ pooled`` (:func:`_dot_block`'s order), every column."""
    wg = cw[:n_m * (n_c + n_n)].reshape(n_m, n_c + n_n)
    bg = cw[n_m * (n_c + n_n):n_m * (n_c + n_n + 1)]
    n_l = pooled.shape[1]
    for o0 in range(0, n_m, 2):
        nb = min(2, n_m - o0)
        _dot_block(wg, o0, nb, 0, n_c, pooled, part[4], part[0:2])
        for u in range(nb):
            to, pu = t[o0 + u], part[u]
            bo = bg[o0 + u]
            for lp in range(n_l):
                to[lp] = bo + pu[lp]


@njit(cache=True)
def correct_write(y, n_c, cg, cw, t, g, z, part):  # pragma: no cover - compiled
    """A digital 1x1 correction of a conv's output ``y`` ``(N, L)`` into ``z`` ``(N, L)``.

    ``g = max(t + Wg[:, C:] @ y, 0)`` with ``t`` from :func:`_correction_input`, then
    ``z = (bc + Wc[:, :N] @ y) + Wc[:, N:] @ g``: a 1x1 conv of each channel concat, each part
    summed in ascending channel order (:func:`_dot_block`) and the parts added as torch's two
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
        part: float32 ``(5, L')`` scratch, ``L' >= L``: two pairs of partial sums and, in
            row 4, zeros (allocated so, never written).
    """
    n_m, n_n = cg[6], cg[7]
    n_l = y.shape[1]
    o1 = n_m * (n_c + n_n + 1)
    wg = cw[:n_m * (n_c + n_n)].reshape(n_m, n_c + n_n)
    wc = cw[o1:o1 + n_n * (n_n + n_m)].reshape(n_n, n_n + n_m)
    bc = cw[o1 + n_n * (n_n + n_m):o1 + n_n * (n_n + n_m + 1)]
    zero = np.float32(0.0)
    zrow, first, second = part[4], part[0:2], part[2:4]
    for o0 in range(0, n_m, 2):
        nb = min(2, n_m - o0)
        _dot_block(wg, o0, nb, n_c, n_n, y, zrow, first)
        for u in range(nb):
            go, to, pu = g[o0 + u], t[o0 + u], first[u]
            for lp in range(n_l):
                v = to[lp] + pu[lp]
                go[lp] = zero if v < 0 else v       # NaN kept, as torch's relu
    for o0 in range(0, n_n, 2):
        nb = min(2, n_n - o0)
        _dot_block(wc, o0, nb, 0, n_n, y, zrow, first)
        _dot_block(wc, o0, nb, n_n, n_m, g, zrow, second)
        for u in range(nb):
            zo, pu, pv = z[o0 + u], first[u], second[u]
            bo = bc[o0 + u]
            for lp in range(n_l):
                zo[lp] = (bo + pu[lp]) + pv[lp]
