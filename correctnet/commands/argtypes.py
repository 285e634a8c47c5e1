"""Argparse value types shared by the subcommands (one clear message per bad value)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: type, minimum: float, *, strict: bool) -> Callable[[str], int | float]:
    """Build an argparse type accepting finite ``kind`` values ``>= minimum`` (``>`` if strict)."""
    relation = ">" if strict else ">="
    noun = "an integer" if kind is int else "a finite number"
    shown = int(minimum) if float(minimum).is_integer() else minimum
    expected = f"expected {noun} {relation} {shown}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__}_{'gt' if strict else 'ge'}_{shown}"
    return parse


#: An integer >= 1 (epochs, samples, sizes).
positive_int = _number(int, 1, strict=False)
#: An integer >= 0 (seeds).
nonneg_int = _number(int, 0, strict=False)
#: A finite float >= 0 (sigma, beta, weight decay).
nonneg_float = _number(float, 0.0, strict=False)
#: A finite float > 0 (learning rates, scales).
positive_float = _number(float, 0.0, strict=True)
