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

VGG16 is defined for 32x32 inputs (CIFAR style: five 2x2 max-pools to 1x1x512, then a small
classifier 512-512-classes). Smaller inputs (28x28 Fashion-MNIST) are zero-padded
symmetrically to 32x32 by a leading ``features.pad`` layer; larger inputs are reduced to 1x1 by
an adaptive average pool after the last max-pool.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from correctnet.errors import UsageError

#: Model names accepted by :func:`build_model`.
MODEL_NAMES: tuple[str, ...] = ("lenet5", "vgg16", "vgg16_bn")

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


class VGG16(_Net):
    """CIFAR-style VGG16 (13 conv 3x3 layers, 5 max-pools, classifier 512-512-classes).

    Inputs smaller than 32x32 are zero-padded to 32x32 (``features.pad``); larger ones are
    average-pooled to 1x1 after the last max-pool (``features.gap``).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 batch_norm: bool = False, output_scale: OutputScale | None = None) -> None:
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
            layers.append((name, nn.Conv2d(channels, int(item), 3, padding=1)))
            if batch_norm:
                layers.append((f"bn{block}_{index}", nn.BatchNorm2d(int(item))))
            layers.append((f"relu{block}_{index}", nn.ReLU()))
            channels = int(item)
            index += 1
        if input_size > 32:
            layers.append(("gap", nn.AdaptiveAvgPool2d(1)))
        classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(512, 512)),
            ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(512, num_classes)),
        ]))
        super().__init__(nn.Sequential(OrderedDict(layers)), classifier,
                         output_scale or OutputScale())


def build_model(name: str, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                output_scale: float = 1.0, learn_output_scale: bool = False) -> nn.Module:
    """Build a freshly initialised network by name.

    Args:
        name: One of :data:`MODEL_NAMES` (``"lenet5"``, ``"vgg16"``, ``"vgg16_bn"``).
        num_classes: Number of output logits.
        in_channels: Input image channels (1 for (Fashion-)MNIST, 3 for CIFAR).
        input_size: Input image height = width, in pixels.
        output_scale: Initial digital logit scale ``s`` (``logits = s * classifier(x)``).
        learn_output_scale: Learn ``s`` (as ``exp(log_s)``) instead of keeping it fixed.

    Returns:
        The model (on CPU, float32, training mode).

    Raises:
        UsageError: Unknown name or invalid sizes.
    """
    if name not in MODEL_NAMES:
        raise UsageError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")
    for field, value in (("num_classes", num_classes), ("in_channels", in_channels),
                         ("input_size", input_size)):
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{field} must be a positive integer, got {value!r}")
    scale = OutputScale(output_scale, learn_output_scale)
    if name == "lenet5":
        return LeNet5(num_classes, in_channels, input_size, scale)
    return VGG16(num_classes, in_channels, input_size, batch_norm=(name == "vgg16_bn"),
                 output_scale=scale)


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
