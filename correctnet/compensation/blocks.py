"""The digital blocks of a compensated layer (CorrectNet, Fig. 5): generators and compensators.

:class:`ConvGenerator` / :class:`ConvCompensator` for convolutions (1x1 convolutions over the
layer's pooled input and its analog output, computed as batched matmuls by
:class:`PointwiseConv`), :class:`LinearGenerator` / :class:`LinearCompensator` for Linear
layers, and :func:`generator_width` (``m = max(1, round(ratio * n))``). Every block is marked
digital (:func:`mapping.mark_digital`): never converted to a crossbar, never varied.
:mod:`correctnet.compensation.modules` wraps them around a layer and inserts them into a
network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from correctnet.errors import PlanError

__all__ = ["GENERATOR_POOLS", "ConvGenerator", "ConvCompensator", "LinearGenerator",
           "LinearCompensator", "PointwiseConv", "pointwise_conv", "generator_width"]


def _mark_digital(module: nn.Module) -> nn.Module:
    """Mark ``module`` digital with :func:`mapping.mark_digital` (if mapping is importable)."""
    try:
        from mapping import mark_digital
    except ImportError:  # pragma: no cover - mapping is part of the project
        module._correctnet_digital = True
        return module
    return mark_digital(module)


def pointwise_conv(parts: list[torch.Tensor], conv: nn.Conv2d) -> torch.Tensor:
    """``conv(torch.cat(parts, dim=1))`` for a 1x1 ``conv``, without building the concat.

    Equation: ``out[b, o] = bias[o] + sum_p W[o, c_p] @ parts[p][b]`` over the parts' channel
    blocks ``c_p``, one batched matmul per part on ``(B, C_p, H*W)`` views. Same values as the
    concat + convolution up to float32 rounding (about 1e-6), and several times faster on the
    CPU for the few channels compensation uses (torch's NCHW 1x1 convolution and the concat
    dominate a compensated network's Monte-Carlo time otherwise).

    Args:
        parts: Tensors ``(B, C_p, H, W)`` with equal ``B, H, W``; ``sum C_p`` = in-channels.
        conv: A 1x1, stride-1, unpadded, ungrouped ``nn.Conv2d`` with a bias.

    Returns:
        ``(B, out_channels, H, W)``.
    """
    b, _, h, w = parts[0].shape
    weight = conv.weight.reshape(conv.out_channels, -1)
    out = conv.bias.view(1, -1, 1).expand(b, -1, h * w)
    c0 = 0
    for part in parts:
        c = part.shape[1]
        out = torch.baddbmm(out, weight[:, c0:c0 + c].expand(b, -1, -1),
                            part.reshape(b, c, h * w))
        c0 += c
    return out.view(b, -1, h, w)


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution over the channel concat of several tensors (:func:`pointwise_conv`).

    Same parameters (and state-dict keys) as ``nn.Conv2d(in_channels, out_channels, 1)``;
    called as a module so that forward hooks (e.g. :func:`mapping.hardware_report`'s digital
    MAC count: ``out.numel() * in_channels``) see it.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, parts: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``conv(cat(parts, 1))``; a single tensor is the concat itself."""
        return pointwise_conv([parts] if isinstance(parts, torch.Tensor) else list(parts), self)


def generator_width(n: int, ratio: float) -> int:
    """Generator width ``m = max(1, round(ratio * n))``.

    Args:
        n: Output channels / features of the compensated layer.
        ratio: Compensation ratio ``m / n`` (> 0).

    Returns:
        The number of generator filters ``m`` (>= 1).

    Raises:
        PlanError: if ``ratio`` is not > 0 or ``n`` is not >= 1.
    """
    if n < 1:
        raise PlanError(f"layer width n must be >= 1, got {n}")
    if not ratio > 0:
        raise PlanError(f"compensation ratio must be > 0, got {ratio}")
    return max(1, int(round(ratio * n)))


#: How a conv generator brings the layer's input to the output's size (see ConvGenerator).
GENERATOR_POOLS: tuple[str, ...] = ("receptive", "adaptive")


class ConvGenerator(nn.Module):
    """Generator ``g = relu(W_g * concat(pool(x), y) + b_g)``, ``m`` 1x1 filters.

    ``pool`` brings the layer's input ``x`` to the output's spatial size:

    * ``"receptive"`` (default): the mean of each output position's receptive field, i.e.
      ``avg_pool2d(x, kernel, stride, padding)`` with the base convolution's geometry
      (zero padding counted, as the convolution sees it), so position ``(i, j)`` of the pooled
      map summarises exactly the inputs that produced ``y[..., i, j]``. For a valid
      (unpadded) convolution that shrinks the map this is what an adaptive pool gets wrong:
      its windows tile the whole input and drift away from the receptive fields.
    * ``"adaptive"``: ``adaptive_avg_pool2d(x, y.shape[-2:])`` (compensation files saved
      before the receptive pool load with it, so they compute what they did).

    A geometry the receptive pool cannot express (dilation, padding > kernel / 2) falls back
    to the adaptive pool.

    Args:
        in_channels: ``l``, channels of the layer's input.
        out_channels: ``n``, channels of the layer's output.
        m: Generator filters.
        window: ``(kernel_size, stride, padding, dilation)`` of the base convolution (pairs);
            None: adaptive pool.
        pool: One of :data:`GENERATOR_POOLS`.

    Shape:
        x: ``(B, l, H_in, W_in)``, y: ``(B, n, H, W)`` -> ``(B, m, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, m: int, *,
                 window: tuple | None = None, pool: str = "receptive") -> None:
        super().__init__()
        if pool not in GENERATOR_POOLS:
            raise PlanError(f"generator pool must be one of {GENERATOR_POOLS}, got {pool!r}")
        self.conv = PointwiseConv(in_channels + out_channels, m)
        self.pool = pool
        self.window = window if pool == "receptive" and _receptive_ok(window) else None

    def pooled(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``x`` pooled to ``size`` (see the class docstring); the identity at equal size."""
        if self.window is not None:
            kernel, stride, padding, _ = self.window
            if tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0):
                return x
            out = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True)
            if tuple(out.shape[-2:]) == tuple(size):
                return out
        # same size: the pool is the identity (each window one element), so it is skipped
        return x if tuple(x.shape[-2:]) == tuple(size) else F.adaptive_avg_pool2d(x, size)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` to ``y``'s spatial size, concat, 1x1 conv, ReLU."""
        return F.relu(self.conv([self.pooled(x, y.shape[-2:]), y]))


def _receptive_ok(window: tuple | None) -> bool:
    """Whether ``avg_pool2d`` can average exactly the receptive fields of this geometry."""
    if window is None:
        return False
    kernel, _, padding, dilation = window
    return (tuple(dilation) == (1, 1) and not isinstance(padding, str)
            and all(2 * p <= k for p, k in zip(padding, kernel)))


class ConvCompensator(nn.Module):
    """Compensator ``y' = W_c * concat(y, g) + b_c``, ``n`` 1x1 filters, initialised to identity.

    Args:
        out_channels: ``n``, channels of the layer's output.
        m: Generator filters.

    Shape:
        y: ``(B, n, H, W)``, g: ``(B, m, H, W)`` -> ``(B, n, H, W)``.
    """

    def __init__(self, out_channels: int, m: int) -> None:
        super().__init__()
        self.conv = PointwiseConv(out_channels + m, out_channels)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            idx = torch.arange(out_channels)
            self.conv.weight[idx, idx, 0, 0] = 1.0

    def forward(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Return the compensated output."""
        return self.conv([y, g])


class LinearGenerator(nn.Module):
    """Generator ``g = relu(W_g concat(x, y) + b_g)`` for a Linear layer.

    Shape:
        x: ``(B, in)``, y: ``(B, n)`` -> ``(B, m)``.
    """

    def __init__(self, in_features: int, out_features: int, m: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features + out_features, m)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Concat input and output, affine, ReLU."""
        return F.relu(self.fc(torch.cat([x, y], dim=-1)))


class LinearCompensator(nn.Module):
    """Compensator ``y' = W_c concat(y, g) + b_c`` for a Linear layer, initialised to identity.

    Shape:
        y: ``(B, n)``, g: ``(B, m)`` -> ``(B, n)``.
    """

    def __init__(self, out_features: int, m: int) -> None:
        super().__init__()
        self.fc = nn.Linear(out_features + m, out_features)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            idx = torch.arange(out_features)
            self.fc.weight[idx, idx] = 1.0

    def forward(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Return the compensated output."""
        return self.fc(torch.cat([y, g], dim=-1))
