"""Checkpoints: model weights + JSON-safe metadata, written atomically.

File layout (``torch.save`` of a dict)::

    {"format": "correctnet-checkpoint", "version": 1,
     "state_dict": model.state_dict(), "meta": {...}, "optimizer_state": dict | None}

``meta`` keys written by training (:func:`correctnet.training.train_model`): ``model``,
``dataset``, ``num_classes``, ``in_channels``, ``input_size``, ``output_scale``,
``learn_output_scale``, ``width`` (VGG16's channel multiplier; absent = 1), ``digital_gain``
(:mod:`correctnet.workloads.gains`; absent = ``"none"``), ``method``,
``sigma``, ``beta``, ``k``, ``epoch``, ``epochs``, ``test_accuracy`` (fraction), ``history``,
``train_config``; callers may add their own keys.
:func:`load_checkpoint` needs ``model`` and the shape keys to rebuild the network.

Writes are atomic (:func:`correctnet.fileio.atomic_write`), so a killed
process leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from correctnet.errors import CheckpointError, UsageError
from correctnet.fileio import atomic_write
from correctnet.workloads.gains import digital_gain_of
from correctnet.workloads.models import build_model, output_scale_of

FORMAT = "correctnet-checkpoint"
VERSION = 1
_REQUIRED = ("model", "num_classes", "in_channels", "input_size")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any], *,
                    optimizer_state: dict | None = None) -> Path:
    """Write a checkpoint atomically (:func:`correctnet.fileio.atomic_write`).

    Args:
        path: Destination file (parent directories are created).
        model: The network; its ``state_dict()`` is stored (moved to CPU).
        meta: JSON-safe metadata; must contain ``model``, ``num_classes``, ``in_channels``,
            ``input_size`` for :func:`load_checkpoint` to rebuild the network;
            ``output_scale`` / ``learn_output_scale`` are set from the model's output scale,
            ``digital_gain`` from its digital gains.
        optimizer_state: Optional ``optimizer.state_dict()`` for resuming training.

    Returns:
        The path written.

    Raises:
        CheckpointError: ``meta`` lacks a required key.
    """
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise CheckpointError(f"checkpoint meta for {path} lacks {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    meta = dict(meta)
    meta["output_scale"], meta["learn_output_scale"] = output_scale_of(model)
    meta["digital_gain"] = digital_gain_of(model)
    payload = {"format": FORMAT, "version": VERSION, "state_dict": state, "meta": meta,
               "optimizer_state": optimizer_state}
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file's raw payload (state_dict, meta, optimizer_state) on CPU.

    Args:
        path: Checkpoint file.

    Returns:
        The payload dict (see the module docstring).

    Raises:
        CheckpointError: Missing file, unreadable/corrupt file, or not a correctnet checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))[:4]
        hint = (f"one of {', '.join(str(path / n) for n in inside)}" if inside
                else f"e.g. {path / 'checkpoint.pt'}")
        raise CheckpointError(f"checkpoint {path} is a folder; give the checkpoint file "
                              f"inside it: {hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found (train one with `correctnet train "
                              "--out DIR`, which writes DIR/checkpoint.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file "
                              f"({type(exc).__name__})") from exc
    if isinstance(payload, dict) and payload.get("format") == "correctnet-compensation":
        raise CheckpointError(
            f"{path} holds CorrectNet compensators, not a network: they belong to a base "
            "network (the run folder's <base>.pt); `correctnet reproduce --out RUN` with the "
            "run's arguments prints their evaluation, or in Python use "
            "correctnet.compensation.train.load_compensation(path, base) and simulate the "
            "returned network")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a correctnet checkpoint (no '{FORMAT}' header)")
    meta = payload.get("meta")
    if not isinstance(meta, dict) or any(key not in meta for key in _REQUIRED):
        raise CheckpointError(f"checkpoint {path} has incomplete meta; need {', '.join(_REQUIRED)}")
    return payload


def _load_error_summary(exc: BaseException, keep: int = 2) -> str:
    """The informative lines of a ``load_state_dict`` error (torch puts them after a header)."""
    lines = [line.strip().rstrip(".") for line in str(exc).splitlines() if line.strip()]
    details = [line for line in lines if not line.startswith("Error(s) in loading")]
    if not details:
        return lines[0] if lines else type(exc).__name__
    more = f" (and {len(details) - keep} more)" if len(details) > keep else ""
    return "; ".join(d[:200] for d in details[:keep]) + more


def load_checkpoint(path: str | Path, *, expect_model: str | None = None,
                    strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a checkpoint and load its weights.

    Args:
        path: Checkpoint file written by :func:`save_checkpoint`.
        expect_model: If given, the checkpoint must hold this model name.
        strict: Passed to ``load_state_dict`` (False lets extra keys, e.g. compensators, pass).

    Returns:
        ``(model, meta)``: the model on CPU in eval mode, and the metadata dict.

    Raises:
        CheckpointError: Missing, corrupt, other model, or weights that do not fit.
    """
    payload = read_checkpoint(path)
    meta = dict(payload["meta"])
    if expect_model is not None and meta["model"] != expect_model:
        raise CheckpointError(f"checkpoint {path} holds model {meta['model']!r}, "
                              f"expected {expect_model!r}")
    try:
        model = build_model(meta["model"], num_classes=int(meta["num_classes"]),
                            in_channels=int(meta["in_channels"]),
                            input_size=int(meta["input_size"]),
                            output_scale=float(meta.get("output_scale", 1.0)),
                            learn_output_scale=bool(meta.get("learn_output_scale", False)),
                            width=float(meta.get("width", 1.0)),
                            digital_gain=str(meta.get("digital_gain", "none")))
        model.load_state_dict(payload["state_dict"], strict=strict)
    except UsageError as exc:
        raise CheckpointError(f"checkpoint {path} has bad model settings in its meta: "
                              f"{exc}") from exc
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit model {meta['model']!r} "
                              f"({meta['in_channels']} input channels, {meta['input_size']} px, "
                              f"{meta['num_classes']} classes): {_load_error_summary(exc)}; "
                              "the weights are of another architecture or the file was "
                              "edited") from exc
    model.eval()
    return model, meta
