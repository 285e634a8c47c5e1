"""Argparse value types shared by the subcommands (one clear message per bad value).

Every type raises :class:`argparse.ArgumentTypeError`, which argparse turns into one line
naming the option (``argument --lr: expected ...``) and exit code 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: Largest finite float32 (~3.4e38): floats that enter tensor arithmetic must stay below it,
#: else torch fails with "value cannot be converted to type float without overflow".
FLOAT32_MAX = 3.4028234663852886e38


def _number(kind: type, minimum: float, *, strict: bool,
            maximum: float | None = None) -> Callable[[str], int | float]:
    """Build an argparse type accepting finite ``kind`` values ``>= minimum`` (``>`` if strict).

    Floats must also be ``<= maximum`` (default :data:`FLOAT32_MAX`).
    """
    relation = ">" if strict else ">="
    noun = "an integer" if kind is int else "a finite number"
    shown = int(minimum) if float(minimum).is_integer() else minimum
    if maximum is None and kind is float:
        maximum = FLOAT32_MAX
    expected = f"expected {noun} {relation} {shown}"
    if maximum is not None:
        expected += f" and <= {maximum:.3g}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
        if (not math.isfinite(value) or value < minimum or (strict and value == minimum)
                or (maximum is not None and value > maximum)):
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__}_{'gt' if strict else 'ge'}_{shown}"
    return parse


#: An integer >= 1 (epochs, samples, sizes).
positive_int = _number(int, 1, strict=False)
#: An integer >= 0 (seeds).
nonneg_int = _number(int, 0, strict=False)
#: A finite float in [0, FLOAT32_MAX] (sigma, beta, weight decay).
nonneg_float = _number(float, 0.0, strict=False)
#: A finite float in (0, FLOAT32_MAX] (learning rates, scales).
positive_float = _number(float, 0.0, strict=True)


def torch_device(text: str) -> str:
    """Argparse type: ``cpu``, ``cuda`` or ``cuda:N``, checked against this machine.

    Raises:
        argparse.ArgumentTypeError: Another device kind, CUDA not available, or ``N`` not a
            visible CUDA device.
    """
    value = text.strip().lower()
    kind, sep, index = value.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and sep) or (
            sep and not index.isdigit()):          # "cpu:", "cuda:" and "cuda:x" too
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text!r} requested but CUDA is not available on this machine; use cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return value


def _variant(text: str):
    from correctnet.errors import UsageError
    from correctnet.training.variants import Variant

    try:
        return Variant.parse(text)
    except UsageError:
        return None


def variant_name(text: str) -> str:
    """A network variant in the study's spelling (``variation-aware`` -> ``variation_aware``).

    An unknown name is returned as given, so that argparse's ``choices`` reports it.
    """
    variant = _variant(text)
    return text if variant is None else variant.value


def method_name(text: str) -> str:
    """A training method in ``TrainConfig``'s spelling (``variation_aware`` -> ``variation-aware``).

    An unknown name is returned as given, so that argparse's ``choices`` reports it.
    """
    variant = _variant(text)
    return text if variant is None else variant.method


def add_dask_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--workers N`` and ``--scheduler ADDRESS`` (mutually exclusive) to a command."""
    from correctnet.distributed import INSTALL_HINT

    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="run on a local Dask cluster of N worker processes "
                            f"(needs {INSTALL_HINT})")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on an existing Dask scheduler, e.g. tcp://host:8786")
