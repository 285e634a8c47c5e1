"""Networks onto RRAM crossbars: module swap, im2col lowering, Monte-Carlo, reports.

Uses torch and :mod:`xbar`; never imports ``correctnet``. See ``mapping/README.md``.
"""

from __future__ import annotations

from .control import (
    as_generator,
    executions,
    program,
    program_ideal,
    resample,
    select_layers,
    set_backend,
    set_execution,
)
from .convert import (
    COMPUTE_LAYERS,
    analog_layers,
    convert_to_crossbar,
    crossbar_layers,
    default_mapping,
    is_digital,
    mark_digital,
    unconverted_layers,
)
from .errors import (
    ArgumentTypeError,
    BackendError,
    DataError,
    LayerSelectionError,
    MappingError,
    NotProgrammedError,
    NumericalError,
    UnsupportedLayerError,
)
from .correction import ConvCorrection
from .cost import COST_PRESETS, CostConstants, CostPresetError
from .evaluation import evaluate_accuracy
from .execution import (
    EXECUTIONS,
    Execution,
    FusedExecution,
    IdealConverterExecution,
    ReferenceExecution,
    TorchExecution,
)
from .fastpath import warmup
from .layers import BACKENDS, CrossbarConv2d, CrossbarLayer, CrossbarLinear
from .montecarlo import MonteCarloResult, run_monte_carlo
from .threads import set_threads, thread_counts, torch_single_threaded
from .report import HardwareReport, hardware_report
from .torch_ops import lognormal_theta, lognormal_weight

__all__ = [
    "ArgumentTypeError", "BACKENDS", "BackendError", "COMPUTE_LAYERS", "COST_PRESETS",
    "ConvCorrection", "CostConstants", "CostPresetError", "CrossbarConv2d", "EXECUTIONS",
    "Execution", "FusedExecution", "IdealConverterExecution", "ReferenceExecution",
    "TorchExecution",
    "CrossbarLayer", "CrossbarLinear", "DataError", "HardwareReport", "LayerSelectionError",
    "MappingError", "MonteCarloResult", "NotProgrammedError", "NumericalError",
    "UnsupportedLayerError",
    "analog_layers", "as_generator", "executions", "set_execution", "set_threads",
    "thread_counts", "torch_single_threaded", "convert_to_crossbar", "crossbar_layers",
    "default_mapping", "evaluate_accuracy", "hardware_report", "is_digital", "lognormal_theta",
    "lognormal_weight", "mark_digital", "program", "program_ideal", "resample",
    "run_monte_carlo", "select_layers", "set_backend", "unconverted_layers", "warmup",
]

from .kernel_cache import refresh as _refresh_kernel_cache

_refresh_kernel_cache()     # a changed kernel file empties every fused kernel's cache
