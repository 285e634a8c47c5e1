"""Reading evaluation data and counting correct predictions (shared by every execution).

:func:`materialise` checks and reads ``(inputs, labels)`` batches once; :func:`evaluate_accuracy`
is the one clean/programmed accuracy of a model as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn
from xbar.errors import InputError

from .errors import DataError, MappingError, NumericalError
from .layers import CrossbarLayer
from .threads import torch_single_threaded


def materialise(data: Iterable) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Read every ``(inputs, labels)`` batch of ``data`` once (CPU tensors), checked.

    Inputs must be floating-point tensors ``(N, ...)`` with the same per-example shape in
    every batch; labels a 1-D integer tensor ``(N,)`` of class indices ``>= 0``.

    Raises:
        DataError: empty data, batches that are not ``(inputs, labels)`` pairs, or inputs or
            labels of the wrong shape or dtype (the message names what was expected).
    """
    out = []
    example_shape = None
    for i, batch in enumerate(data):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise DataError(f"data must yield (inputs, labels) batches; batch {i} is a "
                            f"{type(batch).__name__}")
        try:
            x, y = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"batch {i}: inputs and labels must be tensors or arrays ({exc})"
                            ) from None
        _check_batch(i, x, y)
        if example_shape is None:
            example_shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != example_shape:
            raise DataError(f"batch {i}: inputs have per-example shape {tuple(x.shape[1:])}, "
                            f"but batch 0 has {example_shape}; every batch must match")
        out.append((x.cpu(), y.cpu()))
    if not out or sum(len(y) for _, y in out) == 0:
        raise DataError("data holds no batches; give an iterable of (inputs, labels), e.g. a "
                        "DataLoader")
    return out


def _check_batch(i: int, x: torch.Tensor, y: torch.Tensor) -> None:
    """Shapes and dtypes of one batch (see :func:`materialise`)."""
    if x.ndim < 2 or not torch.is_floating_point(x):
        raise DataError(f"batch {i}: inputs must be a floating-point tensor (N, ...), e.g. "
                        f"images (N, C, H, W); got shape {tuple(x.shape)}, dtype {x.dtype}")
    if y.ndim != 1 or y.dtype == torch.bool or torch.is_floating_point(y) or y.is_complex():
        hint = (" (one-hot labels: use labels.argmax(1))" if y.ndim == 2 and y.shape[-1] > 1
                else " (use labels.view(-1))" if y.ndim == 2 else "")
        raise DataError(f"batch {i}: labels must be a 1-D integer tensor of class indices, "
                        f"shape (N,); got shape {tuple(y.shape)}, dtype {y.dtype}{hint}")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"batch {i}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"batch {i}: labels must be class indices >= 0, got {int(y.min())}")


@contextmanager
def _inputs_fit(x: torch.Tensor):
    """Turn a model's shape error on the first batch into a :class:`DataError`."""
    try:
        yield
    except (MappingError, InputError):
        raise
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"inputs of per-example shape {tuple(x.shape[1:])} (dtype {x.dtype}) "
                        f"do not fit the model: {first}") from exc


def hooked_forward(model: nn.Module, x: torch.Tensor, handles: list) -> None:
    """Run ``model(x)`` without gradients, then remove the hook ``handles`` (even on error)."""
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _count_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Correct arg-max predictions; the logits must be finite ``(N, classes)``.

    Raises:
        NumericalError: NaN/inf logits (their arg-max would be reported as an accuracy).
        DataError: logits not ``(N, classes)``, or a label ``>= classes``.
    """
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise DataError(f"the model must return logits (N, classes) = ({labels.shape[0]}, "
                        f"classes); got shape {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).sum())
        raise NumericalError(f"{bad} of {logits.numel()} logits are NaN/inf, so no accuracy "
                             "can be reported (is the variation sigma so large that "
                             "exp(theta) overflows float32?)")
    if len(labels) and int(labels.max()) >= logits.shape[1]:
        raise DataError(f"label {int(labels.max())} is out of range for a model with "
                        f"{logits.shape[1]} classes (labels must be in [0, {logits.shape[1]}))")
    return int((logits.argmax(dim=-1) == labels.to(logits.device)).sum())


def evaluate_accuracy(model: nn.Module, data: Iterable, *,
                      device: torch.device | str | None = None) -> float:
    """Fraction of correctly classified inputs (arg-max of the logits), in eval mode.

    Args:
        model: Any classifier (converted or not), run as it is programmed now.
        data: Iterable of ``(inputs, labels)`` batches.
        device: Where to run; default the device of the model's parameters.

    Returns:
        Accuracy in [0, 1].

    Raises:
        DataError: empty or malformed data (see :func:`materialise`), or inputs that do not
            fit the model.
        NumericalError: NaN/inf logits.

    Note:
        With Numba-run crossbar layers (``reference``/``fused``) on CPU, torch runs
        single-threaded during the evaluation (its spinning OpenMP workers would starve
        Numba's), then is restored.
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    numba_layers = any(m.execution.uses_numba for m in model.modules()
                       if isinstance(m, CrossbarLayer))
    correct = total = 0
    try:
        with torch.no_grad(), torch_single_threaded(dev.type == "cpu" and numba_layers):
            for i, (x, y) in enumerate(materialise(data)):
                if i == 0:
                    with _inputs_fit(x):
                        logits = model(x.to(dev))
                else:
                    logits = model(x.to(dev))
                correct += _count_correct(logits, y)
                total += len(y)
    finally:
        model.train(was_training)
    return correct / total


