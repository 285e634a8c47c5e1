"""What compensation costs in weights: parameter counts and the overhead fraction.

Overhead = parameters (weights + biases) of every generator and compensator divided by the
parameters of the original network (weights + biases of all its layers), a fraction; the
search's cost (CorrectNet, Sec. IV-C).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from correctnet.compensation.modules import (
    _check_plan,
    _inside_compensation,
    compensation_cost,
    compensation_parameters,
)

__all__ = ["count_parameters", "plan_overhead", "model_overhead"]


def count_parameters(model: nn.Module, *, exclude_compensation: bool = True) -> int:
    """Parameters (weights + biases) of ``model``, compensators excluded by default."""
    total = 0
    for name, p in model.named_parameters():
        if exclude_compensation and _inside_compensation(name):
            continue
        total += p.numel()
    return total


def plan_overhead(model: nn.Module, plan: Mapping[str, float]) -> float:
    """Overhead of ``plan`` on the uncompensated ``model`` without building it.

    Equation: ``sum_i compensation_cost(layer_i, ratio_i) / count_parameters(model)``.

    Raises:
        PlanError: if the plan names an unknown layer or a bad ratio.
    """
    plan = _check_plan(model, plan)
    modules = dict(model.named_modules())
    extra = sum(compensation_cost(modules[k], r) for k, r in plan.items())
    return extra / max(1, count_parameters(model))


def model_overhead(model: nn.Module) -> float:
    """Overhead of a model that already holds compensation (params in compensators / others)."""
    extra = sum(p.numel() for p in compensation_parameters(model))
    return extra / max(1, count_parameters(model))
