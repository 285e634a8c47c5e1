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
(:func:`mapping.fusion.install_fusion`) such a module is replaced by its ``base`` and the
correction becomes a post-op of the base's fused conv kernel
(:func:`mapping.correction_kernels.correct_write`, with the ``nn.ReLU`` / ``nn.MaxPool2d``
that follow the module in a plain ``nn.Sequential``): per image, the pooled input and the
generator's input part once, then per device sample the rest, before the output is written.
Afterwards the module is put back; outside that run nothing changes. The float32 sums run in
another order than torch's ``baddbmm``, so a probe checks each correction against the
module within :data:`mapping.fusion.BN_RTOL`. A base with a padding mode other than zeros is not
fused (its kernel reads a padded copy, the pool the raw input).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .errors import ArgumentTypeError, MappingError
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

    def pooled_size(self, h: int, w: int) -> tuple[int, int]:
        """Spatial size of the average pool over an ``h x w`` input (floor mode)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    def fits(self, h: int, w: int) -> bool:
        """Whether the pool over an ``h x w`` input has the conv's output size there."""
        return (self.base.padding_mode == "zeros"
                and tuple(self.pooled_size(h, w)) == tuple(self.base.output_size(h, w)))

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(cg, cw)`` as the conv kernels take them.

        See :func:`mapping.correction_kernels.correct_write`.
        """
        cg = np.array([*self.kernel, *self.stride, *self.padding, self.gen_weight.shape[0],
                       self.comp_weight.shape[0]], dtype=np.int64)
        cw = np.concatenate([self.gen_weight.ravel(), self.gen_bias,
                             self.comp_weight.ravel(), self.comp_bias])
        return cg, np.ascontiguousarray(cw, dtype=np.float32)


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
