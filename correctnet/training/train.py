"""Training: plain, Lipschitz-regularized (CorrectNet eq. 9) and variation-aware.

Methods (``TrainConfig.method``):

- ``plain``: cross-entropy.
- ``lipschitz``: ``lambda = lipschitz_lambda(sigma, k)``; ``constraint="soft"``:
  ``CE + beta * sum_i ||W_i W_i^T / lambda^2 - I||_F^2 / min(out_i, in_i)`` (eq. 11,
  :func:`~correctnet.training.lipschitz.normalized_penalty`); ``constraint="hard"``: CE only, every
  analog weight set to ``lambda`` times its polar factor before training and after every
  optimizer step (:func:`~correctnet.training.lipschitz.parseval_retract`). Per-layer spectral norms
  and :func:`~correctnet.training.diagnostics.layer_diagnostics` are logged every epoch.
- ``variation-aware``: every batch draws a fresh ``w * exp(theta)``, ``theta ~ N(0, sigma^2)``
  per weight, into every analog Linear/Conv2d weight (modules marked digital are left alone);
  the forward pass uses ``torch.func.functional_call`` with the perturbed weights, so the
  gradient reaches the nominal weights (``d/dw [w exp(theta)] = exp(theta)``). For deep
  batch-norm networks: ``init_checkpoint`` (warm start from the plain network),
  ``sigma_ramp_epochs`` (sigma rises linearly from 0) and ``bn_stats`` (``"batch"``: torch's
  train mode; ``"clean"`` / ``"noisy"``: batch-norm uses running statistics during training, as
  on the chip, recalibrated every epoch without / with variation,
  :mod:`correctnet.training.batchnorm`).

Determinism: the loader's shuffling generator and the variation generator are reseeded from
``seed`` and the epoch number at the start of every epoch, so a run resumed from a checkpoint
gives the same weights as an uninterrupted one.

Optional digital output scale (``output_scale``, ``learn_output_scale``): a scalar multiplying
the logits (see :class:`~.workloads.models.OutputScale`); it lets a network whose layers are held
near a small ``lambda`` still reach confident logits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from mapping import evaluate_accuracy
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from correctnet.errors import CheckpointError, TrainingError, UsageError
from correctnet.training.batchnorm import freeze_batchnorm, recalibrate_batchnorm
from correctnet.training.config import (  # noqa: F401  (public here too)
    _LATER_FIELDS,
    BN_STATS,
    CONSTRAINTS,
    METHODS,
    OPTIMIZERS,
    TrainConfig,
)
from correctnet.training.perturb import perturbed_weights  # noqa: F401  (public here too)
from correctnet.training.diagnostics import layer_diagnostics
from correctnet.training.lipschitz import (normalized_penalty, parseval_retract,
                                           spectral_norms)
from correctnet.training.resume import resume_from, save_epoch
from correctnet.training.variants import Variant
from correctnet.workloads.checkpoint import _load_error_summary, read_checkpoint
from correctnet.workloads.gains import DigitalGain
from correctnet.workloads.models import OutputScale, set_output_scale


def _make_optimizer(params: list[nn.Parameter], scale_params: list[nn.Parameter],
                    cfg: TrainConfig) -> torch.optim.Optimizer:
    groups: list[dict[str, Any]] = [{"params": params}]
    if scale_params:
        groups.append({"params": scale_params, "lr": cfg.output_scale_lr, "weight_decay": 0.0})
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _diverged(what: str, cfg: TrainConfig, epoch: int, path: Path | None) -> TrainingError:
    kept = (f"the last good checkpoint {path} is kept" if path is not None and path.is_file()
            else "no checkpoint was written")
    return TrainingError(
        f"training diverged in epoch {epoch}: {what} (method {cfg.method}, lr {cfg.lr:g}, "
        f"sigma {cfg.sigma:g}, beta {cfg.beta:g}); {kept}; lower --lr, --sigma or --beta")


def _check_loss(loss: torch.Tensor, cfg: TrainConfig, epoch: int, batch: int,
                path: Path | None) -> None:
    """Raise :class:`TrainingError` if the batch loss is NaN or infinite (before the step)."""
    if not bool(torch.isfinite(loss)):
        raise _diverged(f"the loss is {float(loss)!r} at batch {batch}", cfg, epoch, path)


def _check_weights(model: nn.Module, cfg: TrainConfig, epoch: int, path: Path | None) -> None:
    """Raise :class:`TrainingError` if a parameter holds NaN or inf (before saving)."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise _diverged(f"weights {', '.join(bad[:3])} became non-finite", cfg, epoch, path)


def _warm_start(model: nn.Module, path: str, meta: dict[str, Any] | None) -> None:
    """Load the weights of checkpoint ``path`` into ``model`` (``TrainConfig.init_checkpoint``).

    Raises:
        CheckpointError: Missing or corrupt file, another model or width than ``meta`` names,
            or weights that do not fit.
    """
    payload = read_checkpoint(path)
    old = payload["meta"]
    for key in ("model", "width"):
        if meta is not None and key in meta and old.get(key, 1.0 if key == "width" else None) \
                != meta[key]:
            raise CheckpointError(f"cannot warm-start from {path}: it holds {key} "
                                  f"{old.get(key)!r}, this run trains {meta[key]!r}")
    try:
        model.load_state_dict(payload["state_dict"])
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"cannot warm-start from {path}: its weights do not fit this "
                              f"model ({_load_error_summary(exc)})") from exc


def _recalibrate(model: nn.Module, train_loader: Iterable, cfg: TrainConfig, epoch: int,
                 dev: torch.device) -> None:
    """Batch-norm recalibration after ``epoch`` (0: before training), seeded from the epoch."""
    if isinstance(getattr(train_loader, "generator", None), torch.Generator):
        train_loader.generator.manual_seed(cfg.seed * 100_003 + epoch + 50_021)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed * 100_003 + epoch + 70_001)
    sigma = cfg.sigma_at(epoch) if cfg.bn_stats == "noisy" else 0.0
    recalibrate_batchnorm(model, train_loader, batches=cfg.bn_calibration_batches, sigma=sigma,
                          generator=gen, device=dev)


def train_model(model: nn.Module, train_loader: Iterable, test_loader: Iterable | None,
                cfg: TrainConfig, *, checkpoint_path: str | Path | None = None,
                resume: bool = False, progress: bool = True,
                extra_modules: Iterable[nn.Module] | None = None,
                meta: dict[str, Any] | None = None,
                device: str | torch.device | None = None) -> dict[str, Any]:
    """Train ``model`` in place with the chosen method, checkpointing every epoch.

    Args:
        model: Network (e.g. from :func:`correctnet.workloads.models.build_model`).
        train_loader: Iterable of ``(x, y)`` batches; if it has a ``torch.Generator`` in
            ``.generator`` it is reseeded with ``seed + epoch`` every epoch.
        test_loader: Batches for the per-epoch clean test accuracy (``None``: skip).
        cfg: Hyper-parameters.
        checkpoint_path: File written atomically after every epoch (plus per-epoch copies if
            ``cfg.keep_epoch_checkpoints``); ``None``: no checkpoints.
        resume: Continue from ``checkpoint_path`` if it exists (weights, optimizer, history,
            epoch); finished runs return at once.
        progress: Show tqdm progress bars.
        extra_modules: Further modules whose parameters are optimised with the model's (not
            penalised, not varied), e.g. digital heads held outside the model.
        meta: Base checkpoint metadata (``model``, ``dataset``, ``num_classes``,
            ``in_channels``, ``input_size`` are needed to reload); training adds ``method``,
            ``sigma``, ``beta``, ``k``, ``epoch``, ``epochs``, ``test_accuracy``, ``history``,
            ``train_config``, ``output_scale``, ``learn_output_scale``, ``diagnostics`` (lipschitz:
            the last epoch's :func:`~correctnet.training.diagnostics.layer_diagnostics`, else None).
        device: Device to train on (``"cpu"``, ``"cuda"``); ``None``: the model's device.

    Returns:
        History dict of per-epoch lists: ``epoch``, ``train_loss``, ``train_accuracy``,
        ``penalty`` (lipschitz), ``test_accuracy`` (fractions), ``spectral_norms`` (lipschitz:
        one ``{layer: norm}`` dict per epoch), ``diagnostics`` (lipschitz: one
        :func:`~.diagnostics.layer_diagnostics` dict per epoch, conv operator norms
        at the training images' size), ``seconds``; plus ``lambda``.

    Raises:
        UsageError: Bad device. CheckpointError: resume from an incompatible checkpoint, or
        with settings (``cfg`` fields other than ``epochs``, or ``meta`` ``model``,
        ``dataset``, ``limit``) that differ from the checkpoint's; the message names every
        differing key. TrainingError: a loss or weight became NaN or infinite (training
        stops before saving, so the last checkpoint holds the last finite weights).
    """
    dev = _device(model, device)
    if cfg.output_scale != 1.0 or cfg.learn_output_scale:
        set_output_scale(model, cfg.output_scale, cfg.learn_output_scale)
    model.to(dev)
    optimizer = _make_optimizer(*_parameter_groups(model, extra_modules, dev), cfg)
    lam = cfg.lam
    history: dict[str, Any] = {"epoch": [], "train_loss": [], "train_accuracy": [],
                               "penalty": [], "test_accuracy": [], "spectral_norms": [],
                               "seconds": [], "lambda": lam, "diagnostics": []}
    start = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and path is not None and path.is_file():
        history, start = resume_from(path, model, optimizer, cfg, meta, history)
        model.to(dev)
    if start == 0 and cfg.init_checkpoint is not None:
        _warm_start(model, cfg.init_checkpoint, meta)
        model.to(dev)
    hard = cfg.method == "lipschitz" and cfg.constraint == "hard"
    if hard and start == 0:
        parseval_retract(model, lam)
    va = cfg.method == Variant.VARIATION_AWARE.method
    frozen_bn = va and cfg.bn_stats != "batch"
    try:
        steps = len(train_loader)  # type: ignore[arg-type]
    except TypeError:                # an iterable without a length: ramp per epoch
        steps = None
    if frozen_bn and start == 0:
        _recalibrate(model, train_loader, cfg, 0, dev)
    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        if isinstance(getattr(train_loader, "generator", None), torch.Generator):
            train_loader.generator.manual_seed(cfg.seed * 100_003 + epoch)
        sums, last_x = _train_epoch(model, train_loader, optimizer, cfg, epoch, dev, path,
                                    progress, steps=steps, frozen_bn=frozen_bn)
        if frozen_bn:
            _recalibrate(model, train_loader, cfg, epoch, dev)
        if va and cfg.sigma_ramp_epochs > 0:
            history.setdefault("sigma", []).append(cfg.sigma_at(epoch))
        _check_weights(model, cfg, epoch, path)
        test_acc = (evaluate_accuracy(model, test_loader, device=dev)
                    if test_loader is not None else None)
        _record_epoch(history, model, cfg, epoch, sums, test_acc, last_x)
        history["seconds"].append(time.perf_counter() - t0)
        if path is not None:
            save_epoch(path, model, optimizer, cfg, meta, history, epoch, test_acc)
    return history


def _device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """The training device: ``device``, else the model's; CUDA only where it is available."""
    try:
        dev = torch.device(device) if device is not None else next(model.parameters()).device
    except RuntimeError as exc:
        raise UsageError(f"bad device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available; use cpu")
    return dev


def _parameter_groups(model: nn.Module, extra_modules: Iterable[nn.Module] | None,
                      dev: torch.device) -> tuple[list, list]:
    """``(params, scale_params)``: the trained weights (model + extras) and the digital scales'.

    The scales are the logit scale and the per-layer digital gains
    (:mod:`correctnet.workloads.gains`): log-parameters that need a larger step than the
    weights and no weight decay.
    """
    extras = [m.to(dev) for m in (extra_modules or [])]
    scale_modules = [m for m in model.modules() if isinstance(m, (OutputScale, DigitalGain))]
    scale_ids = {id(p) for m in scale_modules for p in m.parameters()}
    scale_params = [p for p in model.parameters() if id(p) in scale_ids and p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in scale_ids]
    params += [p for m in extras for p in m.parameters() if p.requires_grad]
    return params, scale_params


def _train_epoch(model: nn.Module, train_loader: Iterable, optimizer: torch.optim.Optimizer,
                 cfg: TrainConfig, epoch: int, dev: torch.device, path: Path | None,
                 progress: bool, *, steps: int | None = None,
                 frozen_bn: bool = False) -> tuple[dict[str, float], torch.Tensor | None]:
    """One pass over ``train_loader``.

    Variation-aware training draws its weights at ``cfg.sigma_at`` of the fractional epoch
    (``steps`` batches per epoch; None: per epoch), the sigma ramp; ``frozen_bn`` keeps
    batch-norm on its running statistics (``cfg.bn_stats`` "clean" / "noisy").

    Returns:
        ``({"loss", "penalty", "correct", "seen", "batches"} sums, the last input batch)``.

    Raises:
        TrainingError: a non-finite loss (:func:`_check_loss`).
    """
    lam = cfg.lam
    hard = cfg.method == "lipschitz" and cfg.constraint == "hard"
    var_gen = torch.Generator(device=dev).manual_seed(cfg.seed * 100_003 + epoch + 7)
    va = cfg.method == Variant.VARIATION_AWARE.method
    model.train()
    if frozen_bn:
        freeze_batchnorm(model)
    loss_sum = pen_sum = 0.0
    correct = seen = batches = 0
    x = None
    bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
               disable=None if progress else True)
    for x, y in bar:
        x, y = x.to(dev), y.to(dev)
        sigma_now = (cfg.sigma_at(epoch - 1 + (batches + 1) / steps if steps else epoch)
                     if va else 0.0)
        if va and sigma_now > 0:
            logits = functional_call(model, perturbed_weights(model, sigma_now, var_gen),
                                     (x,), strict=False)
        else:
            logits = model(x)
        loss = F.cross_entropy(logits, y)
        total = loss
        if cfg.method == "lipschitz" and cfg.beta > 0 and not hard:
            pen = normalized_penalty(model, lam)
            total = loss + cfg.beta * pen
            pen_sum += float(pen.detach())
        _check_loss(total.detach(), cfg, epoch, batches + 1, path)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if hard:
            parseval_retract(model, lam)
        loss_sum += float(loss.detach())
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += int(y.numel())
        batches += 1
        bar.set_postfix(loss=f"{loss_sum / batches:.3f}")
    bar.close()
    return ({"loss": loss_sum, "penalty": pen_sum, "correct": correct, "seen": seen,
             "batches": batches}, x if batches else None)


def _record_epoch(history: dict[str, Any], model: nn.Module, cfg: TrainConfig, epoch: int,
                  sums: dict[str, float], test_acc: float | None,
                  last_x: torch.Tensor | None) -> None:
    """Append one epoch's numbers (and, for lipschitz, norms and diagnostics) to ``history``."""
    batches = sums["batches"]
    lipschitz = cfg.method == "lipschitz"
    history["epoch"].append(epoch)
    history["train_loss"].append(sums["loss"] / max(batches, 1))
    history["train_accuracy"].append(sums["correct"] / max(sums["seen"], 1))
    history["penalty"].append(sums["penalty"] / max(batches, 1) if lipschitz else None)
    history["test_accuracy"].append(test_acc)
    history["spectral_norms"].append(spectral_norms(model) if lipschitz else None)
    history.setdefault("diagnostics", []).append(
        layer_diagnostics(model, cfg.lam, last_x[:1] if last_x is not None else None)
        if lipschitz else None)
