"""Compensation plans as data: ``{layer name: ratio}``, their text form and canonical form.

A plan names layers as ``model.named_modules()`` does (``"features.conv2"``); a ratio
``<= 0`` means "not compensated" and is dropped by :func:`normalize_plan`, so equal plans
compare equal. The text form is ``"conv2=0.5,fc3=1"`` (:func:`parse_plan`,
:func:`format_plan`; ``"none"`` for the empty plan).
"""

from __future__ import annotations

from collections.abc import Mapping

from correctnet.errors import PlanError

__all__ = ["PlanError", "normalize_plan", "parse_plan", "format_plan"]


def normalize_plan(plan: Mapping[str, float]) -> dict[str, float]:
    """Drop entries with ratio <= 0 and sort by name, so equal plans compare equal.

    Raises:
        PlanError: if a ratio is not a finite number.
    """
    out = {}
    for name, ratio in plan.items():
        r = float(ratio)
        if r != r or r in (float("inf"), float("-inf")):
            raise PlanError(f"plan ratio for {name!r} must be finite, got {ratio}")
        if r > 0:
            out[str(name)] = r
    return dict(sorted(out.items()))


def parse_plan(text: str) -> dict[str, float]:
    """Parse ``"conv2=0.5,fc3=1"`` into ``{"conv2": 0.5, "fc3": 1.0}``.

    Raises:
        PlanError: on an entry without ``=``, a ratio that is not a number, or a layer named
            twice.
    """
    plan: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise PlanError(f"plan entry {item!r} must look like LAYER=RATIO (e.g. conv2=0.5)")
        name, value = (s.strip() for s in item.split("=", 1))
        if name in plan:
            raise PlanError(f"plan names layer {name!r} twice; give each layer once")
        try:
            plan[name] = float(value)
        except ValueError:
            raise PlanError(f"plan ratio for {name!r} must be a number, got {value!r}") from None
    return normalize_plan(plan)


def format_plan(plan: Mapping[str, float]) -> str:
    """Inverse of :func:`parse_plan` (``"none"`` for an empty plan)."""
    plan = normalize_plan(plan)
    return ",".join(f"{k}={v:g}" for k, v in plan.items()) or "none"
