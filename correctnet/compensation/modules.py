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

In mapping's fused Monte-Carlo run a conv :class:`CompensatedLayer` describes its blocks
through :meth:`CompensatedLayer.fused_correction` (a ``mapping.ConvCorrection``) and mapping
runs them as one Numba pass inside the base conv's kernel, checked against this module on a
probe batch; Linear compensated layers stay in torch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from correctnet.compensation.blocks import (  # noqa: F401  (public here too)
    GENERATOR_POOLS,
    ConvCompensator,
    ConvGenerator,
    LinearCompensator,
    LinearGenerator,
    PointwiseConv,
    _mark_digital,
    generator_width,
    pointwise_conv,
)
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



class CompensatedLayer(nn.Module):
    """An analog layer followed by its digital generator and compensator.

    ``forward(x) = compensator(y, generator(x, y))`` with ``y = base(x)``.
    ``base`` is an ordinary ``nn.Conv2d`` / ``nn.Linear`` until
    :func:`mapping.convert_to_crossbar` swaps it for a crossbar layer; the
    generator and compensator are marked digital and stay in torch, except in mapping's fused
    Monte-Carlo run, which runs a conv layer's blocks inside the base's kernel through
    :meth:`fused_correction` (a protocol mapping looks for by name).

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

    def fused_correction(self):
        """This layer as a :class:`mapping.ConvCorrection`, or None (mapping's fusion protocol).

        ``mapping``'s fused Monte-Carlo run looks for this method (duck-typed: mapping never
        imports correctnet) and runs the generator, its ReLU, the compensator and the
        ReLU / max-pool after the layer as one parallel Numba pass
        (:mod:`mapping.correction`), checked against this module on a probe batch. None
        (the layer runs in torch, as before) unless: the base is a crossbar conv
        (:class:`mapping.CrossbarConv2d`), the generator a :class:`ConvGenerator` with the
        receptive pool (an adaptive pool or a dilated conv falls back), the compensator a
        :class:`ConvCompensator`, exact types and ``forward`` methods, no hooks on the
        blocks, float32 CPU weights. Linear compensated layers stay in torch.

        Returns:
            The constants (weights copied), or None.
        """
        from mapping import ConvCorrection, CrossbarConv2d

        gen, comp = self.generator, self.compensator
        if (type(self).forward is not CompensatedLayer.forward
                or not isinstance(self.base, CrossbarConv2d)
                or type(gen) is not ConvGenerator or type(comp) is not ConvCompensator
                or gen.window is None):
            return None
        convs = (gen.conv, comp.conv)
        if any(m._forward_hooks or m._forward_pre_hooks for m in (gen, comp, *convs)):
            return None
        if not all(type(c) is PointwiseConv and t.dtype == torch.float32
                   and t.device.type == "cpu" for c in convs for t in (c.weight, c.bias)):
            return None
        kernel, stride, padding, _ = gen.window
        return ConvCorrection(self.base, kernel=kernel, stride=stride, padding=padding,
                              gen_weight=gen.conv.weight.flatten(1), gen_bias=gen.conv.bias,
                              comp_weight=comp.conv.weight.flatten(1),
                              comp_bias=comp.conv.bias)

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
