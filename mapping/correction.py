"""A digital 1x1 correction of a crossbar conv's output, run as one Numba pass in Monte-Carlo.

Some networks wrap a crossbar conv in a small digital module that corrects its output from
the conv's pooled input and the output itself (CorrectNet's compensated layers, Eldebiky et
al., DATE 2023, Fig. 5). ``mapping`` does not know those modules; it knows the operation:

    y = base(x)                               (the crossbar conv)
    p = avg_pool(x)                           (each output position's window, zeros counted)
    g = relu(Wg @ concat(p, y) + bg)          (M 1x1 filters)
    z = Wc @ concat(y, g) + bc                (N 1x1 filters: the module's output)

The protocol: a module whose output is that operation has a method ``fused_correction()``
that returns a :class:`ConvCorrection` (its constants, copied) or ``None`` when it cannot
say so (an adaptive pool, a linear base, ...). During a fused Monte-Carlo run
(:func:`mapping.fusion.install_fusion`) such a module is swapped for a
:class:`FusedCorrection` that calls ``base`` (its fused conv kernel) and then
:func:`mapping.kernels.conv_correction` (pool, generator, ReLU, compensator and the
``nn.ReLU`` / ``nn.MaxPool2d`` that follow the module in a plain ``nn.Sequential``, in one
parallel pass over the images); afterwards the module is put back. Outside that run nothing
changes. The float32 sums run in another order than torch's ``baddbmm``, so a probe checks
each correction against the module within :data:`mapping.fusion.BN_RTOL`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import kernels
from .errors import ArgumentTypeError, MappingError
from .fastpath import PostOps
from .layers import CrossbarConv2d

_PROTOCOL = "fused_correction"


def _f32(name: str, value, ndim: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    if arr.ndim != ndim:
        raise MappingError(f"ConvCorrection.{name} must have {ndim} dimension(s), got shape "
                           f"{arr.shape}")
    return arr


def _pair(name: str, value) -> tuple[int, int]:
    v = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(v) != 2 or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                              for i in v):
        raise MappingError(f"ConvCorrection.{name} must be an int or a pair of ints, got "
                           f"{value!r}")
    return int(v[0]), int(v[1])


class ConvCorrection:
    """The constants of a digital 1x1 correction of a crossbar conv (module docstring).

    Args:
        base: The crossbar conv whose output is corrected (``y = base(x)``).
        kernel: Average-pool window ``(kh, kw)`` over ``x`` (the conv's, dilation 1).
        stride: Pool stride ``(sh, sw)``.
        padding: Zero padding ``(ph, pw)``, counted in the mean (``count_include_pad``),
            at most half the window.
        gen_weight: ``Wg``, ``(M, C + N)`` (``C`` input channels, ``N`` output channels).
        gen_bias: ``bg``, ``(M,)``.
        comp_weight: ``Wc``, ``(N, N + M)``.
        comp_bias: ``bc``, ``(N,)``.

    Weights are copied as float32 (a later change of the module is not seen).

    Raises:
        ArgumentTypeError: ``base`` is not a :class:`mapping.CrossbarConv2d`.
        MappingError: shapes that do not fit ``base``, a window < 1, a stride < 1, or a
            padding outside ``[0, kernel / 2]``.
    """

    def __init__(self, base, *, kernel, stride, padding, gen_weight, gen_bias, comp_weight,
                 comp_bias) -> None:
        if not isinstance(base, CrossbarConv2d):
            raise ArgumentTypeError(f"ConvCorrection.base must be a CrossbarConv2d, got "
                                    f"{type(base).__name__}")
        self.base = base
        self.kernel, self.stride = _pair("kernel", kernel), _pair("stride", stride)
        self.padding = _pair("padding", padding)
        if min(self.kernel) < 1 or min(self.stride) < 1:
            raise MappingError(f"ConvCorrection kernel and stride must be >= 1, got "
                               f"{self.kernel}, {self.stride}")
        if not all(0 <= 2 * p <= k for p, k in zip(self.padding, self.kernel)):
            raise MappingError(f"ConvCorrection.padding must lie in [0, kernel / 2], got "
                               f"{self.padding} for kernel {self.kernel}")
        self.gen_weight = _f32("gen_weight", gen_weight, 2)
        self.gen_bias = _f32("gen_bias", gen_bias, 1)
        self.comp_weight = _f32("comp_weight", comp_weight, 2)
        self.comp_bias = _f32("comp_bias", comp_bias, 1)
        c, n, m = int(base.in_channels), int(base.out_channels), self.gen_weight.shape[0]
        want = {"gen_weight": (m, c + n), "gen_bias": (m,), "comp_weight": (n, n + m),
                "comp_bias": (n,)}
        for name, shape in want.items():
            if getattr(self, name).shape != shape:
                raise MappingError(f"ConvCorrection.{name} must have shape {shape} for a "
                                   f"{c} -> {n} conv with {m} generator filters, got "
                                   f"{getattr(self, name).shape}")

    def geometry(self, h: int, w: int) -> np.ndarray:
        """The kernel's int64 ``geom`` of the pool over an ``h x w`` input (kernels.py)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        return np.array([kh, kw, sh, sw, 1, 1, ho, wo, ph, pw], dtype=np.int64)


def correction_of(module: nn.Module) -> ConvCorrection | None:
    """``module.fused_correction()`` if it has that protocol method (module docstring)."""
    method = getattr(type(module), _PROTOCOL, None)
    if not callable(method):
        return None
    spec = getattr(module, _PROTOCOL)()
    if spec is not None and not isinstance(spec, ConvCorrection):
        raise ArgumentTypeError(f"{type(module).__name__}.{_PROTOCOL}() must return a "
                                f"ConvCorrection or None, got {type(spec).__name__}")
    return spec


class FusedCorrection(nn.Module):
    """Stands in for a correcting module during a fused Monte-Carlo run (module docstring).

    ``forward(x)`` = ``post(module(x))`` with ``post`` the fused ReLU / max-pool that follow
    the module: ``base(x)`` (called once), then :func:`mapping.kernels.conv_correction`.
    Inputs other than a CPU float32 ``(B, C, H, W)`` batch, or whose pooled size is not the
    conv's output size, run the module itself (and ``post``) in torch.

    Args:
        module: The module replaced (kept for the fallback).
        spec: Its :class:`ConvCorrection`.
        post: The ReLU / max-pool fused after it (:class:`mapping.fastpath.PostOps`).
    """

    def __init__(self, module: nn.Module, spec: ConvCorrection, post: PostOps) -> None:
        super().__init__()
        self.module = module
        self.spec = spec
        self.post = post
        self._pool = post.pool if post.pool is not None else np.zeros(8, dtype=np.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The corrected (and post-processed) output of ``x``."""
        spec = self.spec
        if x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu":
            return self.post.apply_torch(self.module(x))
        geom = spec.geometry(x.shape[2], x.shape[3])
        if tuple(spec.base.output_size(x.shape[2], x.shape[3])) != (int(geom[6]), int(geom[7])):
            return self.post.apply_torch(self.module(x))
        y = spec.base(x)
        xn = np.ascontiguousarray(x.detach().numpy())[None]
        yn = np.ascontiguousarray(y.detach().numpy(), dtype=np.float32).reshape(
            y.shape[0], y.shape[1], -1)
        hq, wq = self.post.out_size(y.shape[2], y.shape[3])
        out = np.empty((y.shape[0], y.shape[1], hq, wq), dtype=np.float32)
        kernels.conv_correction(xn, yn, geom, spec.gen_weight, spec.gen_bias, spec.comp_weight,
                                spec.comp_bias, int(self.post.relu), self._pool, out)
        return torch.from_numpy(out)
