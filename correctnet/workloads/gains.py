"""Per-layer digital gains: an unvaried scale after each analog layer's ADC.

Under the Lipschitz constraint (eq. 10) every analog matrix ``W`` is pushed to ``lambda``
times a matrix with equal singular values, which takes away the network's freedom to weight
its channels. A digital gain after the layer gives it back without touching the analog
array: the crossbar computes ``W x`` (varied, constrained), the periphery multiplies each
output column ``i`` by ``g_i > 0`` (exact, digital), so the layer computes ``g * (W x + b)``.

Kinds (:data:`DIGITAL_GAINS`, ``build_model(..., digital_gain=...)``, ``correctnet train
--digital-gain``):

* ``"none"``: no gains (the default; the model is unchanged).
* ``"scalar"``: one ``g`` per analog layer.
* ``"channel"``: one ``g_i`` per output channel (conv) or unit (Linear), i.e. per crossbar
  column.

``g = exp(log_g)`` stays positive and starts at 1 (a no-op). A positive per-channel scale
commutes with ReLU and max-pooling, ``relu(g x) = g relu(x)``, ``maxpool(g x) = g maxpool(x)``,
so the gain module sits after the layer's ReLU / max-pool (before the next analog layer): the
same function as a gain right after the ADC, and the layer's ReLU / max-pool can still be
fused into the crossbar kernel (:mod:`mapping.fusion`). A layer followed by a batch-norm gets
no gain: the batch-norm's affine already is a per-channel digital gain after the ADC.

Digital cost: ``g_i`` is one multiply per output value, ``out_channels * Ho * Wo`` per image
for a conv, ``out_features`` for a Linear; :func:`gain_cost` counts the parameters and the
multiplies, which the report lists beside the compensators' overhead.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from correctnet.errors import UsageError
from correctnet.workloads.probe import probe_forward

__all__ = ["DIGITAL_GAINS", "DigitalGain", "add_digital_gains", "digital_gain_of",
           "digital_gains", "gain_cost"]

#: Digital gain kinds accepted by :func:`add_digital_gains` (``--digital-gain``).
DIGITAL_GAINS: tuple[str, ...] = ("none", "scalar", "channel")

_ANALOG = (nn.Conv2d, nn.Linear)
#: Modules between an analog layer and its gain: positive scales commute with them.
_COMMUTING = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Dropout)


class DigitalGain(nn.Module):
    """Learned positive gain ``y = g * x`` along the channel axis (dim 1), ``g = exp(log_g)``.

    Args:
        channels: Number of gains: the layer's output channels (``per_channel``), or 1.
        layer: Name of the analog layer whose output it scales (for reports).
        per_channel: One gain per channel (kind ``"channel"``) or one scalar (``"scalar"``).
    """

    def __init__(self, channels: int, layer: str = "", per_channel: bool = True) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise UsageError(f"DigitalGain channels must be an integer >= 1, got {channels!r}")
        if not per_channel and channels != 1:
            raise UsageError(f"a scalar DigitalGain has 1 channel, got {channels}")
        self.layer = layer
        self.per_channel = bool(per_channel)
        self.log_gain = nn.Parameter(torch.zeros(channels))

    @property
    def gain(self) -> torch.Tensor:
        """``g``, shape ``(channels,)`` (detached)."""
        return self.log_gain.detach().exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale channel ``i`` of ``x`` (``(N, C, ...)``) by ``g_i`` (or every value by ``g``)."""
        g = self.log_gain.exp()
        if not self.per_channel:
            return x * g
        return x * g.view(1, -1, *([1] * (x.dim() - 2)))

    def extra_repr(self) -> str:
        """Channel count and the layer it follows."""
        return (f"channels={self.log_gain.numel()}, layer={self.layer!r}, "
                f"per_channel={self.per_channel}")


def _out_channels(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _gain_position(items: list[tuple[str, nn.Module]], i: int) -> int | None:
    """Index in ``items`` where the gain of the analog layer ``items[i]`` goes (None: none).

    After the ReLU / pooling / dropout that follow it; None when a batch-norm follows (its
    affine is the gain already).
    """
    j = i + 1
    while j < len(items) and isinstance(items[j][1], _COMMUTING):
        j += 1
    if j < len(items) and isinstance(items[j][1], nn.modules.batchnorm._BatchNorm):
        return None
    return j


def add_digital_gains(model: nn.Module, kind: str) -> nn.Module:
    """Insert a :class:`DigitalGain` after every analog layer of the model's ``nn.Sequential``s.

    The gain of layer ``features.conv1`` is the module ``features.conv1_gain``, placed after
    the layer's ReLU / max-pool (see the module docstring); layers followed by a batch-norm
    get none. Idempotent: a model that has gains already is returned as it is.

    Args:
        model: A network from :func:`correctnet.workloads.models.build_model`.
        kind: One of :data:`DIGITAL_GAINS`.

    Returns:
        ``model`` (changed in place).

    Raises:
        UsageError: Unknown kind, or gains of another kind already in the model.
    """
    if kind not in DIGITAL_GAINS:
        raise UsageError(f"digital_gain must be one of {' | '.join(DIGITAL_GAINS)}, got {kind!r}")
    have = digital_gain_of(model)
    if have != "none":
        if have != kind:
            raise UsageError(f"the model has {have!r} digital gains already, not {kind!r}")
        return model
    if kind == "none":
        return model
    for prefix, seq in list(model.named_modules()):
        if type(seq) is not nn.Sequential:
            continue
        items = list(seq._modules.items())
        inserts: list[tuple[int, str, DigitalGain]] = []
        for i, (name, layer) in enumerate(items):
            if not isinstance(layer, _ANALOG):
                continue
            at = _gain_position(items, i)
            if at is None:
                continue
            full = f"{prefix}.{name}" if prefix else name
            per_channel = kind == "channel"
            channels = _out_channels(layer) if per_channel else 1
            gain = DigitalGain(channels, full, per_channel).to(layer.weight.device)
            inserts.append((at, f"{name}_gain", gain))
        for at, name, gain in reversed(inserts):
            items.insert(at, (name, gain))
        seq._modules.clear()
        seq._modules.update(items)
    return model


def digital_gains(model: nn.Module) -> list[tuple[str, DigitalGain]]:
    """``[(module name, DigitalGain)]`` of the model, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DigitalGain)]


def digital_gain_of(model: nn.Module) -> str:
    """The kind of digital gains in ``model``: ``"none"``, ``"scalar"`` or ``"channel"``."""
    gains = digital_gains(model)
    if not gains:
        return "none"
    return "channel" if any(g.per_channel for _, g in gains) else "scalar"


def gain_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, float]:
    """Digital cost of the model's gains for one image.

    Args:
        model: A network (with or without gains).
        input_shape: ``(C, H, W)`` of one image.

    Returns:
        ``{"parameters", "multiplies", "layers"}``: gain values stored, multiplies per image
        (one per scaled output value) and the number of gain modules; zeros without gains.
    """
    gains = digital_gains(model)
    if not gains:
        return {"parameters": 0, "multiplies": 0, "layers": 0}
    counts = {}

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        counts[id(module)] = math.prod(output.shape[1:])

    probe_forward(model, input_shape, [g for _, g in gains], hook)
    return {"parameters": sum(g.log_gain.numel() for _, g in gains),
            "multiplies": sum(counts.values()), "layers": len(gains)}
