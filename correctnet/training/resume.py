"""Checkpointing and resuming a training run (:func:`correctnet.training.train.train_model`).

A run writes its checkpoint after every epoch (:func:`save_epoch`: weights, optimizer state,
history, ``TrainConfig``); ``resume=True`` continues from it (:func:`resume_from`) only when the
settings match the checkpoint's (:func:`resume_differences`: every ``TrainConfig`` field but
:data:`RESUMABLE_CHANGES`, and the :data:`RESUME_META_KEYS` of ``meta``), so a resumed run
gives the same weights as an uninterrupted one. The settings arrive as the caller's
``TrainConfig`` (typed ``Any`` here: this module sits below the one that defines it).
"""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any

import torch
from torch import nn

from correctnet.errors import CheckpointError
from correctnet.workloads.checkpoint import _load_error_summary, read_checkpoint, save_checkpoint
from correctnet.workloads.models import output_scale_of

__all__ = ["RESUMABLE_CHANGES", "RESUME_META_KEYS", "resume_differences",
           "epoch_checkpoint_path", "resume_from", "save_epoch"]


#: ``TrainConfig`` fields a resumed run may change: more epochs continue a finished run.
#: The warm-start file only matters before the first epoch (a moved run folder still resumes).
RESUMABLE_CHANGES: frozenset[str] = frozenset({"epochs", "keep_epoch_checkpoints",
                                               "init_checkpoint"})
#: ``meta`` keys that must match on resume when both the checkpoint and the caller give them.
RESUME_META_KEYS: tuple[str, ...] = ("model", "dataset", "limit")


def resume_differences(old_meta: dict[str, Any], cfg: Any,
                       meta: dict[str, Any] | None = None) -> list[str]:
    """Settings of a resumed run that differ from those the checkpoint was trained with.

    Args:
        old_meta: The checkpoint's ``meta`` (its ``train_config`` and data keys).
        cfg: The settings given now (a :class:`~correctnet.training.train.TrainConfig`).
        meta: The metadata given now (``model``, ``dataset``, ``limit`` are compared).

    Returns:
        One ``"--key checkpoint X, given Y"`` string per differing key (empty: resumable);
        ``epochs`` and ``keep_epoch_checkpoints`` may change.
    """
    old_cfg = old_meta.get("train_config")
    diffs = []
    if isinstance(old_cfg, dict):
        # a field the checkpoint lacks was at its default (``TrainConfig.to_dict`` leaves
        # later fields out while at their defaults)
        defaults = {f.name: f.default for f in dataclasses.fields(cfg)
                    if f.default is not dataclasses.MISSING}
        old_cfg = {**defaults, **old_cfg}
        for key, value in dataclasses.asdict(cfg).items():
            if key not in RESUMABLE_CHANGES and key in old_cfg and old_cfg[key] != value:
                diffs.append((key, old_cfg[key], value))
    for key in RESUME_META_KEYS:
        if meta is not None and key in meta and key in old_meta and old_meta[key] != meta[key]:
            diffs.append((key, old_meta[key], meta[key]))
    return [f"--{key.replace('_', '-')} checkpoint {old!r}, given {new!r}"
            for key, old, new in diffs]


def epoch_checkpoint_path(path: Path, epoch: int) -> Path:
    """``<stem>-epochNNN<suffix>`` next to ``path``."""
    return path.with_name(f"{path.stem}-epoch{epoch:03d}{path.suffix}")


def resume_from(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: Any,
                meta: dict[str, Any] | None, history: dict[str, Any]) -> tuple[dict, int]:
    """Load weights and optimizer state from ``path``; ``(history, last finished epoch)``.

    ``cfg`` is the run's :class:`~correctnet.training.train.TrainConfig`; ``history`` is
    returned when the checkpoint holds none.

    Raises:
        CheckpointError: the checkpoint does not fit, or was trained with other settings.
    """
    payload = read_checkpoint(path)
    try:
        model.load_state_dict(payload["state_dict"])
        if payload.get("optimizer_state") is not None:
            optimizer.load_state_dict(payload["optimizer_state"])
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"cannot resume from {path}: it does not fit this model "
                              f"and optimizer ({_load_error_summary(exc)})") from exc
    old = payload["meta"]
    if old.get("method") != cfg.method:
        raise CheckpointError(f"cannot resume from {path}: it was trained with method "
                              f"{old.get('method')!r}, not {cfg.method!r}")
    old_constraint = (old.get("train_config") or {}).get("constraint", "soft")
    if cfg.method == "lipschitz" and old_constraint != cfg.constraint:
        raise CheckpointError(f"cannot resume from {path}: it was trained with constraint "
                              f"{old_constraint!r}, not {cfg.constraint!r}")
    diffs = resume_differences(old, cfg, meta)
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: it was trained with other "
                              f"settings ({'; '.join(diffs)}); rerun with the "
                              "checkpoint's settings or choose another --out")
    return dict(old.get("history") or history), int(old.get("epoch", 0))


def save_epoch(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               cfg: Any, meta: dict[str, Any] | None, history: dict[str, Any],
                epoch: int, test_acc: float | None) -> None:
    """Write the checkpoint of a finished epoch (and its per-epoch copy, if kept)."""
    scale, learn = output_scale_of(model)
    full_meta = dict(meta or {})
    full_meta.update({"method": cfg.method, "sigma": cfg.sigma, "beta": cfg.beta,
                      "k": cfg.k, "epoch": epoch, "epochs": cfg.epochs,
                      "test_accuracy": test_acc, "history": history,
                      "train_config": cfg.to_dict(), "output_scale": scale,
                      "learn_output_scale": learn,
                      "diagnostics": history["diagnostics"][-1]})
    opt_state = optimizer.state_dict()
    save_checkpoint(path, model, full_meta, optimizer_state=opt_state)
    if cfg.keep_epoch_checkpoints:
        save_checkpoint(epoch_checkpoint_path(path, epoch), model, full_meta,
                        optimizer_state=opt_state)
