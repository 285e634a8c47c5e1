"""One forward pass of a zero image with forward hooks: how the model's counters measure it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["probe_forward"]


def probe_forward(model: nn.Module, input_shape: tuple[int, int, int],
                  modules: Iterable[nn.Module], hook: Callable) -> None:
    """Run ``model`` on one zero image ``(1, *input_shape)`` with ``hook`` on ``modules``.

    The model runs in eval mode without gradients; its training mode and the hooks are
    restored / removed afterwards, also when the forward raises.

    Args:
        model: Any network.
        input_shape: ``(C, H, W)`` of one image.
        modules: Modules to hook (``register_forward_hook``).
        hook: ``hook(module, inputs, output)``.
    """
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
