"""Batch-norm statistics for variation-aware training: recalibration with or without variation.

A batch-norm layer is digital: on the chip it applies fixed running statistics (``running_mean``,
``running_var``) to whatever the varied analog layer before it produces. Training in torch's
train mode instead normalises every batch by its own statistics, which absorbs much of the
batch's (shared) weight variation, and accumulates running statistics of perturbed passes; at
inference neither matches the chip, which is one reason naive variation-aware training of a deep
batch-norm network fails. :func:`recalibrate_batchnorm` recomputes the running statistics as the
cumulative mean over a number of batches (torch's ``momentum=None``), either with the nominal
weights (``sigma=0``: "clean" statistics, the network's own) or with a fresh lognormal weight
sample per batch (``sigma>0``: "noisy" statistics, the average over a population of chips).
:func:`freeze_batchnorm` puts the batch-norm layers in eval mode, so a training forward pass uses
the running statistics exactly as the chip does (their affine weight and bias still learn).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.func import functional_call

from correctnet.training.perturb import perturbed_weights

__all__ = ["batchnorm_layers", "freeze_batchnorm", "recalibrate_batchnorm"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers (1d/2d/3d) of ``model`` that track running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every batch-norm layer in eval mode (normalise by running statistics, keep them).

    Call after ``model.train()``. Affine parameters keep their ``requires_grad``.

    Returns:
        The number of batch-norm layers frozen.
    """
    layers = batchnorm_layers(model)
    for m in layers:
        m.eval()
    return len(layers)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: Iterable, *, batches: int, sigma: float = 0.0,
                          generator: torch.Generator | None = None,
                          device: torch.device | str | None = None) -> int:
    """Recompute the running statistics of every batch-norm layer from ``batches`` batches.

    The statistics are reset and accumulated as the plain mean over the batches (torch's
    cumulative average, ``momentum=None``): ``running_mean`` = mean over batches of each batch's
    per-channel mean, ``running_var`` = mean of each batch's unbiased per-channel variance.
    With ``sigma > 0`` every batch runs with a fresh ``w * exp(theta)``, ``theta ~ N(0,
    sigma^2)``, in every analog weight (:func:`correctnet.training.perturbed_weights`), so the
    statistics average over device samples. Only batch-norm buffers change; the model's
    train/eval modes are restored.

    Args:
        model: Network with batch-norm layers (a model without any is returned unchanged).
        data: Iterable of ``(inputs, labels)`` batches (labels are ignored), e.g. the training
            loader.
        batches: Batches to use (>= 1; fewer if ``data`` runs out).
        sigma: Std of the lognormal weight variation during calibration (>= 0; 0 = nominal).
        generator: Torch generator of the variation (on the model's device).
        device: Device of the model (None: its parameters').

    Returns:
        The number of batches used (0 if the model has no batch-norm layer).

    Raises:
        ValueError: ``batches < 1``, ``sigma < 0``, or ``data`` yields no batch.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be an integer >= 1, got {batches!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    used = 0
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for x, _ in data:
            x = x.to(dev)
            if sigma > 0:
                functional_call(model, perturbed_weights(model, sigma, generator), (x,),
                                strict=False)
            else:
                model(x)
            used += 1
            if used >= batches:
                break
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.train(mode)
    if used == 0:
        raise ValueError("recalibrate_batchnorm got no batch from data")
    return used
