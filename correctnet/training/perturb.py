"""Weight-level lognormal perturbation of a network's analog layers, for training in torch.

Variation-aware training and the noisy batch-norm recalibration evaluate the network with
fresh device variation ``w * exp(theta)`` through ``torch.func.functional_call``; the draw
itself is mapping's (:func:`mapping.lognormal_weight`), the analog layers mapping's
(:func:`mapping.analog_layers`), so training and the simulator vary the same weights the
same way.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["perturbed_weights"]


def perturbed_weights(model: nn.Module, sigma: float,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Fresh lognormal samples ``w * exp(theta)``, ``theta ~ N(0, sigma^2)``, of analog weights.

    Args:
        model: Network; every Linear/Conv2d weight not marked digital is perturbed.
        sigma: Std of ``theta`` (>= 0).
        generator: Torch generator on the weights' device (``None``: global RNG).

    Returns:
        ``{parameter name: perturbed tensor}`` for ``torch.func.functional_call``; the tensors
        depend differentiably on the nominal weights.
    """
    from mapping import analog_layers, lognormal_weight

    return {f"{name}.weight" if name else "weight":
            lognormal_weight(module.weight, sigma, generator=generator)
            for name, module in analog_layers(model)}
