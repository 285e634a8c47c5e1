"""Digital post-ops of the Monte-Carlo fast path: folded batch-norm affine, ReLU, max-pool.

:func:`_post_write` is the conv kernels' last step (:mod:`mapping.kernels`): an optional
per-channel affine, ``max(y, 0)`` and a max-pool of one image's output, written into the
output tensor; :func:`_relu_pool2` its ReLU + 2x2 pool. :func:`relu_maxpool` is the same
ReLU / max-pool on its own (parallel over images), for digital ops that follow another
digital module (:class:`mapping.fusion.NumbaPostOps`). ReLU and max-pool are torch's
``nn.ReLU`` / ``nn.MaxPool2d`` bit for bit (NaN kept, ``-inf`` padding).

``pool``: int64 ``(8,)`` = ``(kh, kw, sh, sw, ph, pw, dh, dw)``; ``kh == 0``: no pool.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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
