"""The tiled multiply-accumulate of :meth:`xbar.TiledCrossbar.matmul`: DAC, tiles, ADC.

Per row tile ``t``: DAC codes of the inputs on its word lines, Ohm + Kirchhoff on every bit
line as one stacked GEMM, the ADC conversion of the partial sums, and their float64
accumulation over tiles (:mod:`xbar.kernels`). Without an ADC the tiles' sums are exact, so
one GEMM on the whole effective weight does it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from . import _blas, kernels
from .periphery import adc_gain_step, code_levels

__all__ = ["tiled_forward", "blocks"]

#: Bytes of bit-line partial sums kept at once by :meth:`TiledCrossbar.matmul`.
_CHUNK_BYTES = 16 * 2**20
#: Bytes of the float64 digital accumulator of one batch block.
_ACC_BYTES = 16 * 2**20
#: Most batch rows per block of the ADC path (blocks run in parallel worker threads).
_BLOCK_ROWS = 256
#: Fewest multiply-accumulates per ``matmul`` worth running blocks in worker threads.
_PARALLEL_MIN_MACS = 2**26


def blocks(xb, batch: int) -> tuple[int, int]:
    """(batch rows per block, row tiles per GEMM + ADC call) of the ADC path.

    Depends on the shapes only (never on the thread count), so results are identical for
    any number of workers. A block's float64 accumulator stays under ``_ACC_BYTES`` and a
    group's float32 partial sums under ``_CHUNK_BYTES``.
    """
    nb = min(_BLOCK_ROWS, -(-batch // 4), max(1, _ACC_BYTES // (8 * xb._n_out)))
    n_group = max(1, min(xb._n_rt, _CHUNK_BYTES // (4 * nb * xb._n_out)))
    return nb, n_group

def tiled_forward(xb, x: np.ndarray, wt: np.ndarray, tiles: np.ndarray | None) -> np.ndarray:
    """``y = x @ wt`` through the DAC, every row tile's bit lines and the ADC.

    Args:
        xb: The :class:`~xbar.crossbar.TiledCrossbar` (config, tile geometry, ADC full scale).
        x: Inputs ``(batch, n_in)``, float32.
        wt: Effective weights ``(n_in, n_out)`` (the ideal-ADC paths).
        tiles: The same per row tile ``(n_rt, rows per tile, n_out)`` (the ADC path).

    Returns:
        ``(batch, n_out)`` float32. Batch blocks run in worker threads between
        single-threaded GEMMs; the block sizes depend on the shapes only, so the result does
        not depend on the thread count.
    """
    dac, adc = xb._config.dac, xb._config.adc
    batch = x.shape[0]
    in_range = float(dac.input_range or 0.0)
    q_dac = code_levels(dac.bits)
    if adc.bits is None:
        if dac.bits is None and dac.input_range is None:
            return x @ wt                                   # one plain GEMM
        codes = np.empty_like(x)
        scales = np.empty(batch, dtype=np.float64)
        kernels.dac_quantize(x, in_range, q_dac, codes, scales)
        y = codes @ wt
        kernels.scale_rows(y, scales / q_dac if q_dac else scales)
        return y
    q_adc = code_levels(adc.bits)
    gain, step = adc_gain_step(xb._full_scale, adc.bits, dac.bits)
    y = np.empty((batch, xb._n_out), dtype=np.float32)
    nb_max, n_group = blocks(xb, batch)
    starts = list(range(0, batch, nb_max))

    def block(b0: int) -> None:
        nb = min(nb_max, batch - b0)
        xp = np.zeros((xb._n_rt, nb, xb._rpt), dtype=np.float32)
        scales = np.empty(nb, dtype=np.float64)
        kernels.dac_quantize_tiles(x[b0:b0 + nb], xb._row_starts, in_range, q_dac, xp,
                                   scales)
        p = np.empty((n_group, nb, xb._n_out), dtype=np.float32)
        acc = np.zeros((nb, xb._n_out), dtype=np.float64)
        for t0 in range(0, xb._n_rt, n_group):
            ng = min(n_group, xb._n_rt - t0)
            # Ohm + Kirchhoff on every bit line of ng row tiles: one stacked GEMM on
            # contiguous (leading-axis) slices; numpy leaves BLAS for strided views.
            np.matmul(xp[t0:t0 + ng], tiles[t0:t0 + ng], out=p[:ng])
            kernels.adc_accumulate(p[:ng], gain, step, q_adc, t0, acc, scales, b0, y,
                                   t0 + ng == xb._n_rt)

    workers = min(len(starts), numba.get_num_threads())
    if batch * xb._n_in * xb._n_out < _PARALLEL_MIN_MACS:
        workers = 1  # thread start-up would cost more than it saves
    with _blas.blas_single_threaded() as single:
        if workers > 1 and single:
            with ThreadPoolExecutor(workers) as pool:
                for fut in [pool.submit(block, b0) for b0 in starts]:
                    fut.result()
        else:
            for b0 in starts:
                block(b0)
    return y
