"""Crossbar layers: ``nn.Linear`` / ``nn.Conv2d`` whose products run on tiled RRAM crossbars.

A crossbar layer keeps the digital weight as the master ``nn.Parameter`` ``.weight`` (and the
digital ``.bias``) and holds a :class:`xbar.TiledCrossbar` (``.crossbar``) built from
``weight.flatten(1)``, the ``(out, in)`` matrix (a convolution is lowered by im2col:
``in = in_channels * kh * kw`` in ``(c, i, j)`` order, one matrix row per output position).

How it executes is a strategy object, ``layer.execution`` (:mod:`mapping.execution`:
``reference``, ``fused``, ``torch``, ``ideal``), chosen by :func:`mapping.set_execution`.

The torch strategies use, in order of precedence, a variation drawn with torch by
:meth:`resample` (``w_eff = w * exp(theta)``, gradients reach ``weight``), else the effective
weight of the last :meth:`program` (taken from xbar; the gradient reaches ``weight`` straight
through: ``w + (w_eff - w).detach()``), else the live (level-quantised) weight itself (after
:meth:`program_ideal`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xbar import TiledCrossbar, XbarConfig, balanced_splits

from . import execution as _execution
from . import torch_ops, torch_weights
from .errors import ArgumentTypeError, BackendError, NotProgrammedError, UnsupportedLayerError

#: Legacy backend names accepted by :func:`mapping.set_backend` (aliases of executions).
BACKENDS = ("numba", "torch")
_BACKEND_EXECUTION = {"numba": "reference", "torch": "torch"}


class CrossbarLayer(nn.Module):
    """Base of the crossbar layers: crossbar, programming, execution (not used directly)."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    #: True for convolutions (lowered by im2col).
    is_conv = False

    def _init_crossbar(self, config: XbarConfig) -> None:
        if not isinstance(config, XbarConfig):
            raise ArgumentTypeError(f"config must be an xbar.XbarConfig, got "
                                    f"{type(config).__name__}")
        self.config = config
        self._execution: _execution.Execution | None = None
        self.program_count = 0           # bumped by every program()/program_ideal()
        self._key: tuple | None = None
        self._mode = "unprogrammed"     # "programmed" | "ideal" after program/program_ideal
        self._noise: tuple[torch.Tensor, torch.Tensor | None] | None = None   # resample()
        self._torch_cache: dict[str, torch.Tensor] = {}
        self.last_output_size: tuple[int, int] | None = None   # conv (Ho, Wo) of last forward
        self.crossbar = self._build()
        self.program_ideal()

    # ------------------------------------------------------------------ weights
    def weight_matrix(self) -> torch.Tensor:
        """The master weight as the ``(out, in)`` crossbar matrix (``weight.flatten(1)``)."""
        return self.weight.flatten(1)

    def row_bounds(self) -> tuple[int, ...]:
        """Row-tile boundaries along ``in`` (xbar's balanced splits; independent of weights)."""
        return balanced_splits(self.weight_matrix().shape[1], self.config.tile.n_rows)

    def _build(self) -> TiledCrossbar:
        w = self.weight.detach()
        self._key = (w.data_ptr(), w._version, w.device)
        self._built_from = w.flatten(1).cpu().numpy().astype(np.float32, copy=True)
        return TiledCrossbar(self._built_from, self.config)

    def _weight_unchanged(self) -> bool:
        """True if the weight still equals the one the crossbar was built from.

        A cheap identity check first (storage, version counter, device); after a device move
        (``model.to``) or an in-place write the values are compared.
        """
        w = self.weight.detach()
        key = (w.data_ptr(), w._version, w.device)
        if key == self._key:
            return True
        if np.array_equal(w.flatten(1).cpu().numpy(), self._built_from):
            self._key = key
            return True
        return False

    def _refresh(self) -> None:
        if not self._weight_unchanged():
            self.crossbar = self._build()

    @property
    def execution(self) -> _execution.Execution:
        """The strategy running this layer; unset = ``reference`` on CPU, ``torch`` elsewhere."""
        if self._execution is not None:
            return self._execution
        return _execution.automatic(self)

    @execution.setter
    def execution(self, strategy: _execution.Execution | str | None) -> None:
        if isinstance(strategy, str):
            strategy = _execution.make_execution(strategy)
        if strategy is not None and not isinstance(strategy, _execution.Execution):
            raise BackendError(f"execution must be a mapping.execution.Execution, a name in "
                               f"{_execution.EXECUTIONS} or None, got {strategy!r}")
        self._execution = strategy

    @property
    def backend(self) -> str:
        """Legacy view of :attr:`execution`: ``"numba"`` (Numba-run) or ``"torch"``.

        Setting it (``"numba"``, ``"torch"``, None) sets the execution.
        """
        return "numba" if self.execution.uses_numba else "torch"

    @backend.setter
    def backend(self, name: str | None) -> None:
        if name is not None and name not in BACKENDS:
            raise BackendError(f"backend must be one of {BACKENDS} (or None for automatic), "
                               f"got {name!r}")
        self.execution = None if name is None else _BACKEND_EXECUTION[name]

    # ------------------------------------------------------------------ programming
    def program(self, rng: np.random.Generator | int) -> None:
        """Draw one device sample with xbar (rebuilding the crossbar if the weight changed).

        Args:
            rng: ``np.random.Generator`` (advanced) or int seed.
        """
        self._refresh()
        self.crossbar.program(rng)
        self._after_program("programmed")

    def program_ideal(self) -> None:
        """Program the targets exactly (no variation): the layer computes the exact product."""
        self._refresh()
        self.crossbar.program_ideal()
        self._after_program("ideal")

    def _after_program(self, mode: str) -> None:
        self.program_count += 1
        self._mode = mode
        self._noise = None
        self._torch_cache = {}

    def resample(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh lognormal variation with torch on the weight's device (torch backend).

        Weight level: ``theta ~ N(0, sigma^2)`` per weight, ``w_eff = w_t * exp(theta)``; device
        level: one theta per cell, ``G± = G±_t * exp(theta±)``, ``w_eff = (G+ - G-) / k``
        (``w_t``: the level-quantised target, ``k = (g_max - g_min) / w_max``). ``w_eff`` is
        recomputed from the live ``weight`` in every forward, so gradients reach it. Stuck-at
        faults and read noise are not drawn here (a warning says so).

        Args:
            generator: ``torch.Generator`` on the weight's device, or None (global RNG).
        """
        d = self.config.device
        if d.has_faults or d.read_noise > 0:
            warnings.warn("resample() draws lognormal variation only; stuck-at faults and read "
                          "noise of the config are not applied (use program())", stacklevel=2)
        shape = self.weight_matrix().shape
        dev = self.weight.device
        if d.sigma == 0:
            self._noise = (torch.zeros(shape, device=dev), None)
            return
        z_pos = torch_ops.lognormal_theta(shape, d.sigma, generator=generator, device=dev)
        z_neg = None
        if d.level == "device":
            z_neg = torch_ops.lognormal_theta(shape, d.sigma, generator=generator, device=dev)
        self._noise = (z_pos, z_neg)

    def clear_variation(self) -> None:
        """Forget a :meth:`resample` draw (the torch backend falls back to the programmed state)."""
        self._noise = None

    # ------------------------------------------------------------------ torch maths
    def torch_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Effective weight and ADC full scale of the torch strategies.

        See :func:`mapping.torch_weights.torch_weight`.

        Returns:
            ``(w_eff, F)``: ``(out, in)`` on the weight's device (carrying gradients to
            ``weight``), and ``(n_row_tiles, out)`` full scales (weight units, no gradient).
        """
        return torch_weights.torch_weight(self)

    def analog_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W_eff.T`` through DAC, tiles and ADC on the current execution (no bias).

        Shape:
            ``x``: ``(N, in)`` -> ``(N, out)``.
        """
        return self.execution.matmul(self, x)

    def _refresh_or_fail(self) -> None:
        if not self._weight_unchanged():
            raise NotProgrammedError("the weight changed since the crossbar was programmed; "
                                     "call program() or program_ideal() again")

    def extra_repr(self) -> str:
        """Tile grid and backend (appended to the subclass's description)."""
        t = self.config.tile
        return (f"{super().extra_repr()}, tiles={self.crossbar.tile_grid} of "
                f"{t.n_rows}x{t.n_cols}, execution={self.execution.name}")


def _param(t: torch.Tensor | None) -> nn.Parameter | None:
    if t is None or isinstance(t, nn.Parameter):
        return t
    return nn.Parameter(t.detach().clone())


class CrossbarLinear(CrossbarLayer):
    """``y = A(x) + b``: a fully connected layer on tiled crossbars, bias added digitally.

    Args:
        in_features: Inputs (word lines).
        out_features: Outputs (bit lines).
        config: Hardware model of this layer.
        bias: Whether to add a (digital) bias.
        device: Device of the parameters.

    Shape:
        ``(*, in_features)`` -> ``(*, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, config: XbarConfig, *,
                 bias: bool = True, device: torch.device | str | None = None,
                 _weight: torch.Tensor | None = None, _bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        if _weight is None:
            ref = nn.Linear(in_features, out_features, bias=bias, device=device)
            _weight, _bias = ref.weight, ref.bias
        self.weight = _param(_weight)
        self.bias = _param(_bias)
        self._init_crossbar(config)

    @classmethod
    def from_float(cls, module: nn.Linear, config: XbarConfig) -> CrossbarLinear:
        """Build from an ``nn.Linear`` (its Parameters are shared, not copied).

        A parametrized module gives a new Parameter holding its current (computed) weight.
        """
        return cls(module.in_features, module.out_features, config, _weight=module.weight,
                   _bias=module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Analog product plus digital bias, on the layer's :attr:`execution`."""
        return self.execution.forward(self, x)

    def lowered(self, x: torch.Tensor, matmul) -> torch.Tensor:
        """``matmul(rows) + bias`` over the flattened leading dimensions of ``x``.

        Args:
            x: ``(*, in_features)``.
            matmul: ``(N, in) -> (N, out)`` product of an execution strategy.
        """
        lead = x.shape[:-1]
        y = matmul(x.reshape(-1, self.in_features))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        """Shape, bias, tiles and backend."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}{CrossbarLayer.extra_repr(self)}")


class CrossbarConv2d(CrossbarLayer):
    """2-D convolution lowered by im2col onto tiled crossbars; bias added digitally.

    ``F.unfold`` turns the input into one row per output position, ``(B*Ho*Wo, C*kh*kw)``,
    multiplied by the ``(out_channels, C*kh*kw)`` crossbar matrix. Any stride, padding
    (numbers, ``"same"``/``"valid"``, any ``padding_mode``) and dilation; ``groups == 1`` only.

    Shape:
        ``(B, C, H, W)`` -> ``(B, out_channels, Ho, Wo)`` (unbatched ``(C, H, W)`` accepted).
    """

    is_conv = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 config: XbarConfig, *, stride: tuple[int, int] = (1, 1),
                 padding: tuple[int, int] | str = (0, 0), dilation: tuple[int, int] = (1, 1),
                 padding_mode: str = "zeros", bias: bool = True,
                 device: torch.device | str | None = None, _weight: torch.Tensor | None = None,
                 _bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if _weight is None:
            ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                            padding=padding, dilation=dilation, bias=bias, device=device)
            _weight, _bias = ref.weight, ref.bias
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = tuple(_weight.shape[2:])
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)
        self.padding = padding if isinstance(padding, str) else tuple(padding)
        self.padding_mode = padding_mode
        self.weight = _param(_weight)
        self.bias = _param(_bias)
        self._init_crossbar(config)

    @classmethod
    def from_float(cls, module: nn.Conv2d, config: XbarConfig) -> CrossbarConv2d:
        """Build from an ``nn.Conv2d`` (Parameters shared, not copied).

        Raises:
            UnsupportedLayerError: ``groups != 1`` (grouped/depthwise convolutions).
        """
        if module.groups != 1:
            raise UnsupportedLayerError(
                f"Conv2d with groups={module.groups} cannot be mapped (only groups=1 lowers to "
                "one crossbar matrix); leave it digital with convert_to_crossbar(..., "
                "exclude=[name]) or mark_digital(module)")
        return cls(module.in_channels, module.out_channels, module.kernel_size, config,
                   stride=module.stride, padding=module.padding, dilation=module.dilation,
                   padding_mode=module.padding_mode, _weight=module.weight, _bias=module.bias)

    def pad_amounts(self) -> tuple[int, int, int, int]:
        """Explicit ``(left, right, top, bottom)`` padding (``"same"`` resolved as torch does)."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            out = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size)):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]
            return tuple(out)
        ph, pw = self.padding
        return (pw, pw, ph, ph)

    def padded_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input with the layer's padding applied (``padding_mode`` honoured)."""
        pads = self.pad_amounts()
        if not any(pads):
            return x
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(x, pads, mode=mode)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(Ho, Wo)`` for an unpadded input of ``h x w`` pixels."""
        p = self.pad_amounts()
        sizes = []
        for n, lo, hi, k, s, d in ((h, p[2], p[3], self.kernel_size[0], self.stride[0],
                                    self.dilation[0]),
                                   (w, p[0], p[1], self.kernel_size[1], self.stride[1],
                                    self.dilation[1])):
            sizes.append((n + lo + hi - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """im2col, analog product, digital bias, on the layer's :attr:`execution`."""
        return self.execution.forward(self, x)

    def lowered(self, x: torch.Tensor, matmul) -> torch.Tensor:
        """im2col of ``x``, ``matmul(rows)``, fold back to NCHW, digital bias.

        Args:
            x: ``(B, C, H, W)`` or ``(C, H, W)``.
            matmul: ``(N, in) -> (N, out)`` product of an execution strategy.
        """
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        b = x.shape[0]
        ho, wo = self.output_size(x.shape[2], x.shape[3])
        self.last_output_size = (ho, wo)
        cols = F.unfold(self.padded_input(x), self.kernel_size, dilation=self.dilation,
                        stride=self.stride)                       # (B, K, L)
        rows = cols.transpose(1, 2).reshape(b * ho * wo, -1)      # (B*L, K)
        y = matmul(rows).reshape(b, ho * wo, self.out_channels).transpose(1, 2)
        y = y.reshape(b, self.out_channels, ho, wo)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        """Convolution geometry, tiles and backend."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
                f"{CrossbarLayer.extra_repr(self)}")
