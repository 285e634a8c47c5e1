"""Digital error compensation of CorrectNet (Eldebiky et al., DATE 2023, Sec. IV-B, Fig. 5).

A compensated layer ``i`` keeps its analog base layer (mapped onto crossbars,
under device variation) and adds two small *digital* modules:

* the **generator** reads ``concat(pool(x), y)`` -- the layer's input ``x``
  average-pooled to the output's spatial size and the (noisy) analog output
  ``y`` -- and makes ``m`` feature maps ``g`` (1x1 convolution + ReLU);
* the **compensator** reads ``concat(y, g)`` and makes ``n`` maps (1x1
  convolution) that *replace* the layer's output.

For ``nn.Linear`` layers the analogous pair is used: generator
``Linear(in + n -> m)`` + ReLU over ``concat(x, y)``, compensator
``Linear(n + m -> n)`` over ``concat(y, g)``. We keep the input in the
generator (as the paper's convolution version does) because the input is what
the analog layer corrupted; the price is that a wide Linear layer is expensive
to compensate (LeNet-5's fc1 costs > 20 % of the network even at small ratios),
which the placement search sees through the overhead.

``m = max(1, round(ratio * n))`` per layer. The compensator is initialised to
``[I | 0]`` (identity on the output part, zero on ``g``, zero bias), so a fresh
compensated layer returns exactly the original output; training moves it away
from identity only as far as the loss asks.

Overhead = parameters (weights + biases) of every generator and compensator
divided by the parameters of the original network (weights + biases of all
layers), a fraction. LeNet-5 has 61,706 parameters; compensating conv2 (n=16)
at ratio 1 costs 896 (1.45 %).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from correctnet.compensation.plan import format_plan, normalize_plan, parse_plan  # noqa: F401
from correctnet.errors import PlanError

__all__ = [
    "PlanError",
    "ConvGenerator",
    "GENERATOR_POOLS",
    "ConvCompensator",
    "LinearGenerator",
    "LinearCompensator",
    "CompensatedLayer",
    "generator_width",
    "PointwiseConv",
    "pointwise_conv",
    "compensable_layers",
    "make_compensated_layer",
    "insert_compensation",
    "compensation_cost",
    "compensation_parameters",
    "compensated_layers",
]



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


class CompensatedLayer(nn.Module):
    """An analog layer followed by its digital generator and compensator.

    ``forward(x) = compensator(y, generator(x, y))`` with ``y = base(x)``.
    ``base`` is an ordinary ``nn.Conv2d`` / ``nn.Linear`` until
    :func:`mapping.convert_to_crossbar` swaps it for a crossbar layer; the
    generator and compensator are marked digital and stay in torch.

    Args:
        base: The original layer.
        generator: A :class:`ConvGenerator` or :class:`LinearGenerator`.
        compensator: A :class:`ConvCompensator` or :class:`LinearCompensator`.
        ratio: The plan's ratio (kept for reports).
    """

    def __init__(
        self, base: nn.Module, generator: nn.Module, compensator: nn.Module, ratio: float
    ) -> None:
        super().__init__()
        self.base = base
        self.generator = _mark_digital(generator)
        self.compensator = _mark_digital(compensator)
        self.ratio = float(ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Analog output corrected digitally."""
        y = self.base(x)
        return self.compensator(y, self.generator(x, y))

    def extra_repr(self) -> str:
        """Show the ratio."""
        return f"ratio={self.ratio:g}"


def _layer_dims(module: nn.Module) -> tuple[str, int, int]:
    """Return ``(kind, inputs, outputs)`` of a Conv2d/Linear (or crossbar) layer."""
    if isinstance(module, nn.Conv2d) or hasattr(module, "out_channels"):
        return "conv", int(module.in_channels), int(module.out_channels)
    if isinstance(module, nn.Linear) or hasattr(module, "out_features"):
        return "linear", int(module.in_features), int(module.out_features)
    raise PlanError(
        f"cannot compensate a {type(module).__name__}; only Conv2d and Linear layers are valid"
    )


def compensation_cost(module: nn.Module, ratio: float) -> int:
    """Parameters a compensation of ``module`` at ``ratio`` adds.

    Equation: ``m (l + n) + m`` (generator) ``+ n (n + m) + n`` (compensator),
    with ``l`` inputs, ``n`` outputs and ``m = generator_width(n, ratio)``.

    Args:
        module: A Conv2d or Linear layer.
        ratio: Compensation ratio (> 0).

    Returns:
        Number of added parameters (weights + biases).
    """
    _, n_in, n_out = _layer_dims(module)
    m = generator_width(n_out, ratio)
    return m * (n_in + n_out) + m + n_out * (n_out + m) + n_out


def make_compensated_layer(module: nn.Module, ratio: float, *,
                           pool: str = "receptive") -> CompensatedLayer:
    """Wrap ``module`` in a :class:`CompensatedLayer` with a fresh generator/compensator.

    Args:
        module: Conv2d or Linear layer (shared, not copied).
        ratio: Compensation ratio ``m / n`` (> 0).
        pool: How a conv generator pools the input (:class:`ConvGenerator`).

    Returns:
        The wrapper; its output equals ``module``'s output until trained.
    """
    kind, n_in, n_out = _layer_dims(module)
    m = generator_width(n_out, ratio)
    if kind == "conv":
        window = tuple(_pair(getattr(module, a)) for a in
                       ("kernel_size", "stride", "padding", "dilation"))
        gen: nn.Module = ConvGenerator(n_in, n_out, m, window=window, pool=pool)
        comp: nn.Module = ConvCompensator(n_out, m)
    else:
        gen = LinearGenerator(n_in, n_out, m)
        comp = LinearCompensator(n_out, m)
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        gen.to(device=weight.device, dtype=weight.dtype)
        comp.to(device=weight.device, dtype=weight.dtype)
    return CompensatedLayer(module, gen, comp, ratio)


def _pair(v):
    return v if isinstance(v, str) else tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def compensable_layers(model: nn.Module) -> list[str]:
    """Names of the analog layers of ``model`` in definition order (``mapping.analog_layers``).

    These are the names plans use (as in ``model.named_modules()``); layers
    inside digital modules (compensators, anything marked digital) are left out.
    """
    from mapping import analog_layers

    return [name for name, _ in analog_layers(model)]


def _inside_compensation(name: str) -> bool:
    parts = name.split(".")
    return "generator" in parts or "compensator" in parts


def _check_plan(model: nn.Module, plan: Mapping[str, float]) -> dict[str, float]:
    plan = normalize_plan(plan)
    valid = compensable_layers(model)
    for name in plan:
        if name not in valid:
            raise PlanError(
                f"plan names layer {name!r}, which is not a Conv2d/Linear layer of the model; "
                f"valid: {', '.join(valid)}"
            )
    return plan


def insert_compensation(
    model: nn.Module, plan: Mapping[str, float], *, inplace: bool = False,
    pool: str = "receptive",
) -> nn.Module:
    """Replace every layer named in ``plan`` by a :class:`CompensatedLayer`.

    Args:
        model: A float network (not yet converted to crossbars).
        plan: ``{layer_name: ratio}``; ratios <= 0 mean "no compensation".
        inplace: Modify ``model`` instead of a deep copy.
        pool: How conv generators pool the layer input (:class:`ConvGenerator`).

    Returns:
        The compensated model; untrained, it computes the same function.

    Raises:
        PlanError: for unknown layer names or invalid ratios.
    """
    plan = _check_plan(model, plan)
    if not inplace:
        model = copy.deepcopy(model)
    for name, ratio in plan.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make_compensated_layer(getattr(parent, child), ratio, pool=pool))
    return model


def compensated_layers(model: nn.Module) -> dict[str, CompensatedLayer]:
    """``{name: wrapper}`` of every :class:`CompensatedLayer` in ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, CompensatedLayer)}


def compensation_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Trainable parameters of every generator and compensator in ``model``."""
    params: list[nn.Parameter] = []
    for wrapper in compensated_layers(model).values():
        params.extend(wrapper.generator.parameters())
        params.extend(wrapper.compensator.parameters())
    return params


def freeze_except(model: nn.Module, params: Iterable[nn.Parameter]) -> None:
    """Set ``requires_grad`` False on every parameter of ``model`` except ``params``."""
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


__all__ += ["freeze_except"]
