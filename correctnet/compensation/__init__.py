"""CorrectNet's digital error compensators.

The generator/compensator modules, inserting them by a plan, their cost, and training
them under device variation.

Modules: ``blocks``, ``modules``, ``overhead``, ``plan``, ``train``.
Their public names are importable from here too; they load on first use (PEP 562), so
importing the package stays cheap.
"""

from __future__ import annotations

from correctnet.lazy import lazy_getattr

_LAZY = {
    "ConvGenerator": "correctnet.compensation.modules",
    "ConvCompensator": "correctnet.compensation.modules",
    "LinearGenerator": "correctnet.compensation.modules",
    "LinearCompensator": "correctnet.compensation.modules",
    "CompensatedLayer": "correctnet.compensation.modules",
    "generator_width": "correctnet.compensation.modules",
    "PointwiseConv": "correctnet.compensation.modules",
    "pointwise_conv": "correctnet.compensation.modules",
    "compensable_layers": "correctnet.compensation.modules",
    "make_compensated_layer": "correctnet.compensation.modules",
    "insert_compensation": "correctnet.compensation.modules",
    "compensation_cost": "correctnet.compensation.modules",
    "compensation_parameters": "correctnet.compensation.modules",
    "compensated_layers": "correctnet.compensation.modules",
    "freeze_except": "correctnet.compensation.modules",
    "count_parameters": "correctnet.compensation.overhead",
    "plan_overhead": "correctnet.compensation.overhead",
    "model_overhead": "correctnet.compensation.overhead",
    "normalize_plan": "correctnet.compensation.plan",
    "parse_plan": "correctnet.compensation.plan",
    "format_plan": "correctnet.compensation.plan",
    "CompensationConfig": "correctnet.compensation.train",
    "train_compensation": "correctnet.compensation.train",
    "compensation_state": "correctnet.compensation.train",
    "save_compensation": "correctnet.compensation.train",
    "load_compensation": "correctnet.compensation.train",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
