"""Monte-Carlo fast path: crossbar layers run the fused kernels of :mod:`mapping.kernels`.

The ``fused`` execution strategy (:class:`mapping.execution.FusedExecution`) calls
:func:`fused_forward`: the effective weight of the current device sample (from xbar, after
``program``) goes through the fused im2col + DAC + tiled MAC + ADC kernel, with no im2col
matrix in memory.
The first layer of a network can also return a precomputed output (``override``), computed
for several device samples at once from one DAC quantisation of its (shared) input. A conv
can also apply the digital ops that follow it (:class:`PostOps`): an eval-mode batch-norm
folded into a per-channel affine (torch's arithmetic, checked to a tolerance), ReLU and
max-pool (bit-exact). Zero padding is read inside the kernel (no padded copy).

The maths equals ``xbar.TiledCrossbar.matmul`` on the same cells; only the order of the
float32 bit-line sums differs (tests compare to a tolerance).
"""

from __future__ import annotations

import time

import numpy as np
import xbar
import torch
import torch.nn.functional as F
from torch import nn

from . import converter_kernels, field_blocks, kernels, postop_kernels
from .errors import BackendError


class LayerStatics:
    """Per-layer constants of the fused kernel: tiles, converter gains, bias, geometry."""

    def __init__(self, layer) -> None:
        cfg = layer.config
        dac, adc = cfg.dac, cfg.adc
        xb = layer.crossbar
        self.bounds = np.asarray(xb.row_splits, dtype=np.int64)
        self.q_dac = xbar.code_levels(dac.bits)
        self.q_adc = xbar.code_levels(adc.bits)
        self.in_range = float(dac.input_range or 0.0)
        self.dac_mode = int(dac.bits is not None or dac.input_range is not None
                            or adc.bits is not None)
        self.periph = np.array([self.dac_mode, self.q_dac, self.in_range, self.q_adc],
                               dtype=np.float64)       # see mapping/kernels.py
        n_t = len(self.bounds) - 1
        n_out = xb.shape[0]
        if adc.bits is not None:
            self.gain, self.step = xbar.adc_gain_step(xb.adc_full_scale(), adc.bits, dac.bits)
            self.step = np.ascontiguousarray(self.step, dtype=np.float64)
        else:   # no ADC: the digital sum only rescales the DAC codes
            self.gain = np.ones((n_t, n_out))
            self.step = np.full((n_t, n_out), 1.0 / self.q_dac if self.q_dac else 1.0)
        self.gain = np.ascontiguousarray(self.gain, dtype=np.float64)
        b = layer.bias
        self.bias = (np.zeros(n_out, np.float32) if b is None
                     else b.detach().cpu().numpy().astype(np.float32).ravel())
        self.conv = bool(layer.is_conv)
        if self.conv:
            self.kernel = tuple(int(v) for v in layer.kernel_size)
            self.stride = tuple(int(v) for v in layer.stride)
            self.dilation = tuple(int(v) for v in layer.dilation)
        else:
            self.kernel = self.stride = self.dilation = (1, 1)
        self.n_out = n_out


def sample_weights(layer) -> np.ndarray:
    """The programmed weight the tiles apply (IR drop included), kernel layout ``(K, O)``."""
    return np.ascontiguousarray(layer.crossbar.circuit_weight().T)


def batchnorm_affine(bn: nn.BatchNorm2d) -> np.ndarray:
    """An eval-mode batch-norm as a per-channel affine ``y = alpha * x + beta``, ``(2, C)``.

    torch's CPU kernel (eval mode, float32) computes ``alpha = float32(1 / sqrt(var + eps)) *
    weight`` and ``beta = bias - mean * alpha`` in float32, then ``alpha * x + beta``; its
    vectorised (AVX2 / AVX-512) build contracts both into fused multiply-adds, which is what
    this reproduces: ``beta`` rounded once from the exact float64 ``bias - mean * alpha``, and
    the kernel's ``float32(float64(x) * alpha + beta)``
    (:func:`mapping.postop_kernels._post_write`).
    On a CPU where torch runs unfused multiply-adds the results differ by about one float32
    ulp; :func:`mapping.fusion.install_fusion` checks the fold against torch on a probe batch
    with a tolerance and drops it when they disagree by more.

    Args:
        bn: An ``nn.BatchNorm2d`` with running statistics (its mode is not checked here).

    Returns:
        float64 ``(2, C)``: ``alpha`` and ``beta``, each exactly a float32 value.
    """
    f32 = np.float32
    var = bn.running_var.detach().cpu().numpy().astype(f32)
    mean = bn.running_mean.detach().cpu().numpy().astype(f32)
    n = var.shape[0]
    w = (np.ones(n, f32) if bn.weight is None
         else bn.weight.detach().cpu().numpy().astype(f32))
    b = (np.zeros(n, f32) if bn.bias is None
         else bn.bias.detach().cpu().numpy().astype(f32))
    alpha = (f32(1.0) / np.sqrt(var + f32(bn.eps))) * w                       # float32 ops
    beta = (b.astype(np.float64) - mean.astype(np.float64) * alpha).astype(f32)  # one rounding
    return np.ascontiguousarray(np.stack([alpha, beta]).astype(np.float64))


_NO_AFFINE = np.zeros((2, 0), dtype=np.float64)
_NO_CORRECTION = (np.zeros(8, dtype=np.int64), np.zeros(0, dtype=np.float32))


class PostOps:
    """Digital ops fused after a conv: batch-norm affine, ``nn.ReLU``, ``nn.MaxPool2d``.

    In this order, each optional: a folded eval-mode ``nn.BatchNorm2d`` (per-channel affine,
    :func:`batchnorm_affine`), ``max(y, 0)``, a max-pool. ReLU and max-pool are exact (bit
    for bit torch's); the affine matches torch's batch-norm to a tolerance
    (:func:`mapping.fusion.install_fusion`).

    Attributes:
        relu: Apply ``max(y, 0)``.
        pool: int64 ``(8,)`` ``(kh, kw, sh, sw, ph, pw, dh, dw)`` of the max-pool, or None.
        affine: float64 ``(2, C)`` ``alpha, beta`` of a folded batch-norm, or None.
        correction: A digital correction (:class:`mapping.correction.ConvCorrection`) applied
            to the conv's output first (before the affine, ReLU and pool), or None. Conv
            kernels only: :meth:`apply_torch` has no conv input to pool.
    """

    def __init__(self, relu: bool = False, pool: nn.MaxPool2d | None = None,
                 affine: np.ndarray | None = None, correction=None) -> None:
        self.relu = bool(relu)
        self.correction = correction
        self._corr = correction.kernel_arrays() if correction is not None else _NO_CORRECTION
        self.pool = None
        self.affine = (None if affine is None
                       else np.ascontiguousarray(affine, dtype=np.float64).reshape(2, -1))
        if pool is not None:
            vals = []
            for name in ("kernel_size", "stride", "padding", "dilation"):
                v = getattr(pool, name)
                v = v if v is not None else pool.kernel_size
                vals += list(v) if isinstance(v, (tuple, list)) else [v, v]
            self.pool = np.asarray(vals, dtype=np.int64)

    def kernel_args(self) -> tuple:
        """``(aff, relu, pool, cg, cw)`` as the conv kernels take them."""
        aff = self.affine if self.affine is not None else _NO_AFFINE
        return (aff, int(self.relu), self.pool if self.pool is not None else _NO_POOL,
                *self._corr)

    def out_size(self, ho: int, wo: int) -> tuple[int, int]:
        """Spatial size after the pool (floor mode), ``(Ho, Wo)`` without one."""
        if self.pool is None:
            return ho, wo
        k, s, p, d = self.pool[0:2], self.pool[2:4], self.pool[4:6], self.pool[6:8]
        return tuple(int((n + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1)
                     for i, n in enumerate((ho, wo)))

    def apply_torch(self, y: torch.Tensor) -> torch.Tensor:
        """The same ops in torch, same arithmetic (the fallback of non-kernel inputs)."""
        if self.affine is not None:
            a = torch.from_numpy(self.affine).view(2, 1, -1, 1, 1)
            y = (y.double() * a[0] + a[1]).to(y.dtype)
        if self.relu:
            y = torch.relu(y)
        if self.pool is not None:
            p = [int(v) for v in self.pool]
            y = F.max_pool2d(y, (p[0], p[1]), (p[2], p[3]), (p[4], p[5]), (p[6], p[7]))
        return y


_NO_POOL = np.zeros(8, dtype=np.int64)
_NO_POST = PostOps()


def fused_forward(st: LayerStatics, layer, x: torch.Tensor, wt: np.ndarray, *,
                  post: PostOps | None = None, buffer: np.ndarray | None = None) -> torch.Tensor:
    """Run ``layer`` on ``x`` for ``S`` device samples with the fused kernel.

    Args:
        st: The layer's constants.
        layer: The crossbar layer (for padding and output size).
        x: Input batch (CPU), ``(B, C, H, W)`` for a conv, ``(..., in)`` for a linear layer,
            shared by the ``S`` samples.
        wt: Effective weights, float32 ``(S, K, O)``.
        post: Digital correction / batch-norm affine / ReLU / max-pool applied to a conv's
            output (fused in the kernel).
        buffer: float32 memory a conv's output is written into (its first ``out.size``
            elements, reshaped), or None for a new array. A caller that calls again with the
            same buffer overwrites the previous output; for a large output this saves the
            page faults of fresh memory (tens of ms per 100 MB).

    Returns:
        float32 tensor ``(S, B, O, Ho, Wo)`` (conv; pooled size with ``post.pool``) or
        ``(S, *lead, O)`` (linear), bias added.

    Raises:
        BackendError: ``post`` has a correction that does not fit this input (its pool is
            not the conv's output size, or the conv pads other than with zeros).
    """
    n_s = wt.shape[0]
    if not st.conv:
        return _linear_blas(st, x, wt)
    b = x.shape[0]
    ho, wo = layer.output_size(x.shape[2], x.shape[3])
    layer.last_output_size = (ho, wo)
    if layer.padding_mode == "zeros":       # the kernel reads zeros outside the input
        left, _, top, _ = layer.pad_amounts()
    else:
        x, left, top = layer.padded_input(x), 0, 0
    xn = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)[None]
    geom = np.array([*st.kernel, *st.stride, *st.dilation, ho, wo, top, left], dtype=np.int64)
    post = post if post is not None else _NO_POST
    if post.correction is not None and not post.correction.fits(x.shape[2], x.shape[3]):
        raise BackendError(f"the fused correction's pool does not give this conv's output "
                           f"size {ho}x{wo} on a {x.shape[2]}x{x.shape[3]} input (or the conv "
                           f"pads with {layer.padding_mode!r})")
    hq, wq = post.out_size(ho, wo)
    shape = (n_s, b, st.n_out, hq, wq)
    if buffer is None:
        out = np.empty(shape, dtype=np.float32)
    else:
        size = n_s * b * st.n_out * hq * wq
        if buffer.dtype != np.float32 or buffer.size < size or not buffer.flags.c_contiguous:
            raise BackendError(f"the output buffer must be contiguous float32 with at least "
                               f"{size} elements, got {buffer.dtype} {buffer.shape}")
        out = buffer.reshape(-1)[:size].reshape(shape)
    args = (xn, wt, st.bounds, st.gain, st.step, st.bias, st.periph, geom, *post.kernel_args(),
            out)
    kernel, nb = conv_kernel(st, geom)
    if kernel is kernels.analog_conv_interleaved:
        kernel(*args, nb)
    else:
        kernel(*args)
    return torch.from_numpy(out)


def conv_kernel(st: LayerStatics, geom: np.ndarray) -> tuple:
    """(The conv kernel for this layer and output size, images per interleaved block).

    Narrow outputs run interleaved blocks of images
    (:func:`mapping.kernels.analog_conv_interleaved`, ``nb > 1`` from
    :func:`mapping.field_blocks.block_images`); else positions are vectorised when there are
    many (or few channels), channels otherwise.
    """
    nb = int(field_blocks.block_images(geom, st.bounds[-1], st.periph))
    if nb > 1:
        return kernels.analog_conv_interleaved, nb
    if st.n_out < 32 or geom[6] * geom[7] >= 64:
        return kernels.analog_conv_positions, 1
    return kernels.analog_conv_forward, 1


def fused_matmul(st: LayerStatics, rows: torch.Tensor, wt: np.ndarray) -> torch.Tensor:
    """``rows @ W_eff.T`` of ``S`` samples without bias (any layer's matrix), ``(S, N, O)``."""
    return _linear_blas(st, rows, wt, bias=np.zeros_like(st.bias))


def _linear_blas(st: LayerStatics, x: torch.Tensor, wt: np.ndarray,
                 bias: np.ndarray | None = None) -> torch.Tensor:
    """Linear layer: DAC kernel, one BLAS GEMM per row tile (all samples), ADC kernel."""
    n_s, n_k, n_o = wt.shape
    lead = x.shape[:-1]
    xn = np.ascontiguousarray(x.detach().reshape(-1, n_k).numpy(), dtype=np.float32)
    n = xn.shape[0]
    codes = np.empty_like(xn)
    scales = np.empty(n, dtype=np.float64)
    converter_kernels.dac_rows(xn, st.periph, codes, scales)
    n_t = len(st.bounds) - 1
    w_all = torch.from_numpy(wt).permute(1, 0, 2).reshape(n_k, n_s * n_o)   # (K, S*O)
    c = torch.from_numpy(codes)
    p = torch.empty((n_t, n, n_s * n_o), dtype=torch.float32)
    for t in range(n_t):
        r0, r1 = int(st.bounds[t]), int(st.bounds[t + 1])
        torch.mm(c[:, r0:r1], w_all[r0:r1], out=p[t])
    out = np.empty((n_s, n, n_o), dtype=np.float32)
    pn = p.numpy()
    for s in range(n_s):
        ps = np.ascontiguousarray(pn[:, :, s * n_o:(s + 1) * n_o]) if n_s > 1 else pn
        converter_kernels.adc_rows(ps, st.gain, st.step, st.q_adc, scales,
                                   st.bias if bias is None else bias, out[s])
    return torch.from_numpy(out).reshape(n_s, *lead, n_o)


def warmup() -> float:
    """Compile (or load from the on-disk cache) every xbar and mapping kernel on tiny inputs.

    Call it before timing anything: the first call in a fresh environment compiles (seconds),
    later processes load the cached machine code (``cache=True``).

    The conv kernels' calls, with and without a correction, also compile the kernels of
    :mod:`mapping.postop_kernels`, :mod:`mapping.correction_kernels`,
    :mod:`mapping.window_kernels` and the ADC rule of :mod:`mapping.converter_kernels` that
    they call.

    Returns:
        Wall-clock seconds spent (xbar's kernels included).
    """
    t0 = time.perf_counter()
    xbar.warmup()
    x = np.ones((1, 1, 1, 2, 2), np.float32)
    wt = np.ones((1, 4, 2), np.float32)
    g = np.ones((1, 2))
    out = np.empty((1, 1, 2, 1, 1), np.float32)
    periph = np.array([1.0, 127.0, 0.0, 127.0])
    geom = np.array([2, 2, 1, 1, 1, 1, 1, 1, 0, 0], np.int64)
    pool = np.array([1, 1, 1, 1, 0, 0, 1, 1], np.int64)
    args = (wt, np.array([0, 4], np.int64), g, g, np.zeros(2, np.float32), periph, geom,
            np.ones((2, 2)), 1, pool)
    corr = (np.array([2, 2, 1, 1, 0, 0, 1, 2], np.int64), np.ones(3 + 1 + 2 * 3 + 2, np.float32))
    for fn in (kernels.analog_conv_forward, kernels.analog_conv_positions):
        fn(x, *args, *_NO_CORRECTION, out)
        fn(x, *args[:-3], _NO_AFFINE, 1, pool, *corr, out)
    nb = field_blocks.block_images(geom, 4, periph)
    kernels.analog_conv_interleaved(x, *args, *_NO_CORRECTION, out, nb)
    kernels.analog_conv_interleaved(x, *args[:-3], _NO_AFFINE, 1, pool, *corr, out, nb)
    postop_kernels.relu_maxpool(x[0], 1, pool, np.empty((1, 1, 2, 2), np.float32))
    xr = np.ones((2, 4), np.float32)
    s = np.empty(2)
    converter_kernels.dac_rows(xr, periph, np.empty_like(xr), s)
    converter_kernels.adc_rows(np.ones((1, 2, 2), np.float32), g, g, 127.0, s,
                               np.zeros(2, np.float32), np.empty((2, 2), np.float32))
    return time.perf_counter() - t0
