"""RRAM crossbar simulator: device programming, lognormal variation, DAC/ADC, tiled MACs.

numpy + numba only (never torch). See ``xbar/README.md`` for layouts, units and equations.
"""

from __future__ import annotations

import time

import numpy as np

from . import irdrop, kernels
from .config import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig
from .crossbar import TiledCrossbar, balanced_splits
from .periphery import adc_gain_step, code_levels
from .errors import (ConfigError, ConvergenceError, InputError, NotProgrammedError, ShapeError,
                     XbarError)

__all__ = [
    "ADCConfig", "ConfigError", "ConvergenceError", "DACConfig", "DeviceConfig", "InputError",
    "NotProgrammedError", "ShapeError", "TileConfig", "TiledCrossbar", "XbarConfig", "XbarError",
    "adc_gain_step", "balanced_splits", "code_levels", "irdrop",
    "warmup",
]


def warmup() -> float:
    """Compile (or load from the on-disk cache) every kernel on tiny inputs.

    Returns:
        Wall-clock seconds spent, i.e. the first-call compile/load time.
    """
    t0 = time.perf_counter()
    f32 = np.float32
    w = np.array([0.5, -1.0, 0.25, 0.0], dtype=f32)
    z = np.zeros(4, dtype=f32)
    out = np.empty(4, dtype=f32)
    for program in (kernels.program_cells, kernels.program_cells_serial):
        program(w, z, z, np.zeros(8, dtype=f32), 0.5, False, 1.0, 1e-6, 1e-4, 0, 0.0, 0.0, out)
    kernels.read_noise(w, z, 0.1, out)
    x = np.ones((2, 4), dtype=f32)
    s = np.empty(2, dtype=np.float64)
    kernels.dac_quantize(x, 0.0, 127.0, np.empty_like(x), s)
    xp = np.zeros((2, 2, 2), dtype=f32)
    kernels.dac_quantize_tiles(x, np.array([0, 2, 4], dtype=np.int64), 0.0, 127.0, xp, s)
    g = np.ones((2, 3), dtype=np.float64)
    kernels.adc_accumulate(np.ones((2, 2, 3), dtype=f32), g, g, 127.0, 0,
                           np.zeros((2, 3)), s, 0, np.empty((2, 3), dtype=f32), True)
    kernels.scale_rows(np.ones((2, 3), dtype=f32), s)
    irdrop.transfer_matrix(np.full((2, 2), 1e-5), 1.0)
    return time.perf_counter() - t0
