"""The fused compensator correction: a digital 1x1 correction of a conv kernel's output.

CorrectNet's compensated layers (:mod:`mapping.correction`) run inside the conv kernels of
:mod:`mapping.kernels` as a post-op before the ReLU / max-pool:
``z = Wc @ concat(y, g) + bc``, ``g = relu(Wg @ concat(p, y) + bg)``, ``p`` the average pool
of the conv's input over each output's window (:func:`_window_means`, torch's ``avg_pool2d``
bit for bit). The input part (:func:`_correction_input`) is computed once per image for all
the samples sharing it, the rest per sample (:func:`correct_write`); the 1x1 sums are
float32 in ascending channel order (:func:`_dot_rows`, :func:`_dot_block`).
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
            np.empty((4, rows), dtype=np.float32))


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
    Other strides: tap by tap over output rows, the taps inside the input from
    :func:`mapping.window_kernels._col_range` (uint64 indices, no negative-index fix-up). ``cg``
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
