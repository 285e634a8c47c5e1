"""Network architectures by name: LeNet-5 and CIFAR-style VGG16 (with or without batch-norm).

Every model has two named ``nn.Sequential`` children, ``features`` (convolutions) and
``classifier`` (fully connected layers), with named layers (``features.conv1``,
``classifier.fc3``, ...), and a digital :class:`OutputScale` ``output_scale`` that multiplies
the logits (1.0 and fixed by default, i.e. a no-op).

Why an output scale: under the Lipschitz constraint of CorrectNet every layer's spectral norm
is pushed towards ``lambda`` (~0.34 for sigma 0.5), so an L-layer network's logits shrink by up
to ``lambda**L`` and cross-entropy can no longer be driven down. A scalar on the logits, kept
digital (it is never mapped onto a crossbar and never varied), restores the logit range without
changing the arg-max, so it costs nothing on hardware and leaves the robustness argument intact.

VGG16 is defined for 32x32 inputs (CIFAR style: five 2x2 max-pools to 1x1x512, then a
classifier 512-512-512-classes: 16 weight layers, 13 conv + 3 fully connected). Smaller
inputs (28x28 Fashion-MNIST) are zero-padded symmetrically to 32x32 by a leading
``features.pad`` layer; larger inputs are reduced to 1x1 by an adaptive average pool after the
last max-pool.

VGG16 takes a width multiplier ``w`` (:data:`VGG_WIDTHS`: 1/16, 1/8, 1/4, 1/2, 1): the 13
convolutions have ``int(w * c)`` channels for ``c`` in (64, 64, 128, 128, 256, 256, 256,
512 x 6) and the hidden classifier layer ``int(512 * w)`` units. Parameters and
multiply-accumulates per image (:func:`count_macs`; ``python benchmarks/vgg_widths.py`` prints
the table), 10 classes, 1 input channel (Fashion-MNIST padded to 32x32), ``vgg16_bn``:

=====  ==========  ==============  ===========
width  parameters  analog weights  MACs/image
=====  ==========  ==============  ===========
1/16       60,726          59,860    1,255,744
1/8       240,450         238,728    4,948,608
1/4       956,922         953,488   19,645,696
1/2     3,817,962       3,811,104   78,285,312
1      15,252,426      15,238,720  312,546,304
=====  ==========  ==============  ===========

(without batch-norm: 60,198 / 239,394 / 954,810 / 3,813,738 / 15,243,978 parameters; the MACs
count convolutions and Linear layers only).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from correctnet.errors import UsageError
from correctnet.workloads.gains import add_digital_gains
from correctnet.workloads.probe import probe_forward

#: Model names accepted by :func:`build_model`.
MODEL_NAMES: tuple[str, ...] = ("lenet5", "vgg16", "vgg16_bn")
#: Width multipliers accepted by the VGG16 models (``width=``, ``--width``).
VGG_WIDTHS: tuple[float, ...] = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)

_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


class OutputScale(nn.Module):
    """Digital scalar multiplying the logits: ``y = s * x``.

    Args:
        value: Initial scale ``s`` (> 0).
        learnable: If True, ``s = exp(log_s)`` is learned (stays positive); else ``s`` is a
            fixed buffer.
    """

    def __init__(self, value: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"output_scale must be a finite number > 0, got {value!r}")
        self.learnable = bool(learnable)
        log_s = torch.tensor(math.log(value), dtype=torch.float32)
        if self.learnable:
            self.log_scale = nn.Parameter(log_s)
        else:
            self.register_buffer("log_scale", log_s)

    @property
    def value(self) -> float:
        """Current scale ``s`` as a Python float."""
        return float(self.log_scale.detach().exp())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multiply ``x`` by ``s``."""
        return x * self.log_scale.exp()

    def extra_repr(self) -> str:
        """Show the value and whether it is learned."""
        return f"value={self.value:.4g}, learnable={self.learnable}"


class _Net(nn.Module):
    """``features`` -> flatten -> ``classifier`` -> ``output_scale``."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential,
                 output_scale: OutputScale) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.output_scale = output_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)`` for images ``(batch, C, H, W)``."""
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.output_scale(self.classifier(x))


class LeNet5(_Net):
    """LeNet-5: conv 6@5x5 (pad 2), pool, conv 16@5x5, pool, fc 120-84-classes, ReLU.

    Works for any square input with ``input_size >= 8`` (28 -> 16x5x5 = 400 features,
    32 -> 16x6x6 = 576 features).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 output_scale: OutputScale | None = None) -> None:
        side = ((input_size // 2) - 4) // 2
        if side < 1:
            raise UsageError(f"lenet5 needs input_size >= 12, got {input_size}")
        features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 6, 5, padding=2)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, 5)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
        ]))
        classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(16 * side * side, 120)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(120, 84)),
            ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(84, num_classes)),
        ]))
        super().__init__(features, classifier, output_scale or OutputScale())


def check_width(name: str, width: float) -> float:
    """Validate a width multiplier for model ``name``.

    Args:
        name: Model name (:data:`MODEL_NAMES`).
        width: Channel multiplier; VGG16: one of :data:`VGG_WIDTHS`; LeNet-5: 1 only.

    Returns:
        ``width`` as a float.

    Raises:
        UsageError: Not a number, or not a width of this model.
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise UsageError(f"width must be a number, got {width!r}")
    width = float(width)
    if name.startswith("vgg16"):
        if not any(math.isclose(width, w, rel_tol=1e-9) for w in VGG_WIDTHS):
            raise UsageError(f"{name} width must be one of 1/16, 1/8, 1/4, 1/2, 1 "
                             f"(0.0625, 0.125, 0.25, 0.5, 1), got {width!r}")
        return next(w for w in VGG_WIDTHS if math.isclose(width, w, rel_tol=1e-9))
    if width != 1.0:
        raise UsageError(f"{name} has no width multiplier (only VGG16 does); got width {width!r}")
    return width


class VGG16(_Net):
    """CIFAR-style VGG16: 13 conv 3x3 layers, 5 max-pools, classifier 512-512-512-classes.

    Inputs smaller than 32x32 are zero-padded to 32x32 (``features.pad``); larger ones are
    average-pooled to 1x1 after the last max-pool (``features.gap``). ``width`` scales every
    layer: conv ``int(width * c)`` channels, hidden classifier layers ``int(512 * width)``
    units. 16 weight layers (13 conv + fc1, fc2, fc3), as in the paper's VGG16.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 batch_norm: bool = False, output_scale: OutputScale | None = None,
                 width: float = 1.0) -> None:
        width = check_width("vgg16", width)
        self.width = width
        layers: list[tuple[str, nn.Module]] = []
        if input_size < 32:
            total = 32 - input_size
            before, after = total // 2, total - total // 2
            layers.append(("pad", nn.ZeroPad2d((before, after, before, after))))
        channels, block, index = in_channels, 1, 1
        for item in _VGG16_CFG:
            if item == "M":
                layers.append((f"pool{block}", nn.MaxPool2d(2)))
                block += 1
                index = 1
                continue
            name = f"conv{block}_{index}"
            out = int(width * int(item))
            layers.append((name, nn.Conv2d(channels, out, 3, padding=1)))
            if batch_norm:
                layers.append((f"bn{block}_{index}", nn.BatchNorm2d(out)))
            layers.append((f"relu{block}_{index}", nn.ReLU()))
            channels = out
            index += 1
        if input_size > 32:
            layers.append(("gap", nn.AdaptiveAvgPool2d(1)))
        hidden = int(512 * width)
        classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(channels, hidden)),
            ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(hidden, hidden)),
            ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(hidden, num_classes)),
        ]))
        super().__init__(nn.Sequential(OrderedDict(layers)), classifier,
                         output_scale or OutputScale())


def build_model(name: str, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                output_scale: float = 1.0, learn_output_scale: bool = False,
                width: float = 1.0, digital_gain: str = "none") -> nn.Module:
    """Build a freshly initialised network by name.

    Args:
        name: One of :data:`MODEL_NAMES` (``"lenet5"``, ``"vgg16"``, ``"vgg16_bn"``).
        num_classes: Number of output logits.
        in_channels: Input image channels (1 for (Fashion-)MNIST, 3 for CIFAR).
        input_size: Input image height = width, in pixels.
        output_scale: Initial digital logit scale ``s`` (``logits = s * classifier(x)``).
        learn_output_scale: Learn ``s`` (as ``exp(log_s)``) instead of keeping it fixed.
        width: Channel multiplier of VGG16 (:data:`VGG_WIDTHS`); LeNet-5 accepts only 1.
        digital_gain: Per-layer digital gains after the analog layers
            (:mod:`correctnet.workloads.gains`): ``"none"``, ``"scalar"`` or ``"channel"``.

    Returns:
        The model (on CPU, float32, training mode).

    Raises:
        UsageError: Unknown name, invalid sizes, a width the model does not have, or an
            unknown digital gain kind.
    """
    if name not in MODEL_NAMES:
        raise UsageError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")
    for field, value in (("num_classes", num_classes), ("in_channels", in_channels),
                         ("input_size", input_size)):
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{field} must be a positive integer, got {value!r}")
    width = check_width(name, width)
    scale = OutputScale(output_scale, learn_output_scale)
    if name == "lenet5":
        model: nn.Module = LeNet5(num_classes, in_channels, input_size, scale)
    else:
        model = VGG16(num_classes, in_channels, input_size, batch_norm=(name == "vgg16_bn"),
                      output_scale=scale, width=width)
    return add_digital_gains(model, digital_gain)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and fixed parameters (weights and biases, batch-norm affine)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass of one image in Linear / Conv2d layers.

    Conv2d: ``out_h * out_w * out_channels * in_channels / groups * kh * kw``; Linear:
    ``in_features * out_features`` (biases, batch-norm, pooling and the output scale are not
    counted). Measured with forward hooks on a zero image.

    Args:
        model: Any network of Linear / Conv2d layers.
        input_shape: ``(C, H, W)`` of one image.

    Returns:
        MACs per image.
    """
    total = 0

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += (output.shape[-2] * output.shape[-1] * module.out_channels
                      * module.in_channels // module.groups * kh * kw)
        else:
            total += module.in_features * module.out_features

    probe_forward(model, input_shape,
                  [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))], hook)
    return int(total)


def set_output_scale(model: nn.Module, value: float, learnable: bool) -> None:
    """Replace ``model.output_scale`` by a new :class:`OutputScale` (before building an optimizer).

    Args:
        model: A model from :func:`build_model`.
        value: Initial scale (> 0).
        learnable: Learn the scale.

    Raises:
        UsageError: The model has no ``output_scale`` submodule.
    """
    if not isinstance(getattr(model, "output_scale", None), OutputScale):
        raise UsageError(f"{type(model).__name__} has no output_scale; build it with build_model")
    model.output_scale = OutputScale(value, learnable).to(next(model.parameters()).device)


def output_scale_of(model: nn.Module) -> tuple[float, bool]:
    """Return ``(value, learnable)`` of the model's output scale ((1.0, False) if it has none)."""
    scale = getattr(model, "output_scale", None)
    if isinstance(scale, OutputScale):
        return scale.value, scale.learnable
    return 1.0, False
