"""Numba kernels of the crossbar simulator (the only place with ``@njit``).

Every kernel takes C-contiguous arrays and scalars, writes into caller-allocated outputs, reads
no module globals and draws no random numbers (the callers pass normals drawn with a numpy
``Generator``). ``prange`` loops run over disjoint elements or rows, so results never depend
on the number of threads. The two kernels of the ADC path are serial and ``nogil``: the caller
runs disjoint batch blocks in worker threads between single-threaded GEMMs (see ``_blas.py``).
Arithmetic that decides a rounding is done in float64 so that the
plainly written oracles in ``tests/naive.py`` reproduce it bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


def _program_cells(w_target, z_pos, z_neg, u_fault, sigma, device_level, w_max, g_min, g_max,
                   levels, p_min, p_max, out):  # pragma: no cover - compiled
    """Program one device sample of a flat weight array.

    Compiled twice: :data:`program_cells` (``parallel=True``) and
    :data:`program_cells_serial` (one thread, for small arrays, where waking the thread pool
    costs more than the work and, on a loaded machine, waits for a descheduled worker).
    Elementwise, so both give the same cells.

    Args:
        w_target: (n,) float32 nominal weights, |w| <= w_max.
        z_pos: (n,) float32 standard normals (weight level: theta / sigma per weight; device
            level: for the G+ cell); size 0 when ``sigma == 0``.
        z_neg: (n,) float32 standard normals for the G- cell (device level only, else size 0).
        u_fault: (2n,) float32 uniforms in [0, 1) for G+ (even) and G- (odd); size 0 = no faults.
        sigma: std of theta (float).
        device_level: True = vary each cell, False = vary each weight (paper eq. 1-2).
        w_max: weight mapped onto g_max (> 0).
        g_min: lowest conductance, siemens.
        g_max: highest conductance, siemens.
        levels: conductance levels per cell (>= 2), 0 = continuous.
        p_min: stuck-at-g_min probability per cell.
        p_max: stuck-at-g_max probability per cell.
        out: (n,) float32 effective weights ``(G+ - G-) / k``, ``k = (g_max - g_min) / w_max``.
    """
    n = w_target.shape[0]
    k = (g_max - g_min) / w_max
    vary = z_pos.shape[0] > 0
    faults = u_fault.shape[0] > 0
    for i in prange(n):
        w = np.float64(w_target[i])
        if levels > 0:
            a = abs(w) / w_max * (levels - 1)
            w = math.copysign(np.rint(a) / (levels - 1) * w_max, w)
        if not device_level:
            if vary:
                w = w * math.exp(sigma * np.float64(z_pos[i]))
            if not faults:
                out[i] = np.float32(w)
                continue
            gp = g_min + max(w, 0.0) * k
            gn = g_min + max(-w, 0.0) * k
        else:
            gp = g_min + max(w, 0.0) * k
            gn = g_min + max(-w, 0.0) * k
            if vary:
                gp = gp * math.exp(sigma * np.float64(z_pos[i]))
                gn = gn * math.exp(sigma * np.float64(z_neg[i]))
        if faults:
            u = u_fault[2 * i]
            if u < p_min:
                gp = g_min
            elif u < p_min + p_max:
                gp = g_max
            u = u_fault[2 * i + 1]
            if u < p_min:
                gn = g_min
            elif u < p_min + p_max:
                gn = g_max
        out[i] = np.float32((gp - gn) / k)


program_cells = njit(cache=True, parallel=True)(_program_cells)
program_cells_serial = njit(cache=True)(_program_cells)
#: Weights below which ``TiledCrossbar`` programs with :data:`program_cells_serial`.
PARALLEL_MIN_CELLS = 1 << 17


@njit(cache=True, parallel=True)
def read_noise(w, z, rel_sigma, out):  # pragma: no cover - compiled
    """Apply relative read noise ``out = w * (1 + rel_sigma * z)`` elementwise (flat arrays)."""
    for i in prange(w.shape[0]):
        out[i] = np.float32(np.float64(w[i]) * (1.0 + rel_sigma * np.float64(z[i])))


@njit(cache=True)
def _row_scale(x, b, input_range):  # pragma: no cover - compiled
    """DAC scale of input vector ``b``: ``input_range`` if > 0, else ``max_i |x[b, i]|``."""
    if input_range > 0.0:
        return input_range
    s = 0.0
    for i in range(x.shape[1]):
        a = abs(np.float64(x[b, i]))
        if a > s:
            s = a
    return s


@njit(cache=True, inline="always")
def dac_code(xv, s, qmax):  # pragma: no cover - compiled
    """The DAC rule (every kernel path calls it): the code of one input ``xv`` at scale ``s``.

    ``clip(rint(clip(xv, -s, s) / s * qmax), -qmax, qmax)``, or ``clip(xv, -s, s) / s``
    unrounded when ``qmax == 0`` (ideal DAC); float64 in and out, ``s > 0``.
    """
    xv = min(max(xv, -s), s)
    if qmax == 0.0:
        return xv / s
    c = np.rint(xv / s * qmax)
    return min(max(c, -qmax), qmax)


@njit(cache=True, parallel=True)
def dac_quantize(x, input_range, qmax, codes, scales):  # pragma: no cover - compiled
    """DAC of a batch into a dense layout.

    Args:
        x: (batch, n_in) float32 inputs.
        input_range: fixed scale (> 0) or 0 for per-vector ``max |x|``.
        qmax: largest code ``2**(bits-1) - 1`` as float, 0 = ideal DAC (``x / s`` unrounded).
        codes: (batch, n_in) float32 output, integer codes (or ``x / s`` when ideal).
        scales: (batch,) float64 output, the scale ``s`` of each vector (0 for all-zero rows).
    """
    for b in prange(x.shape[0]):
        s = _row_scale(x, b, input_range)
        scales[b] = s
        for i in range(x.shape[1]):
            if s == 0.0:
                codes[b, i] = 0.0
            else:
                codes[b, i] = np.float32(dac_code(np.float64(x[b, i]), s, qmax))


@njit(cache=True, nogil=True)
def dac_quantize_tiles(x, row_starts, input_range, qmax, xp, scales):  # pragma: no cover
    """DAC of a batch block straight into the padded row-tile layout (serial, releases the GIL).

    Args:
        x: (nb, n_in) float32 inputs.
        row_starts: (n_row_tiles + 1,) int64 boundaries of the row tiles along ``n_in``.
        input_range: fixed scale (> 0) or 0 for per-vector ``max |x|``.
        qmax: largest code as float, 0 = ideal DAC.
        xp: (n_row_tiles, nb, rows_per_tile) float32 output; padding entries (beyond a
            tile's rows) are left untouched, the caller keeps them zero.
        scales: (nb,) float64 output, the scale ``s`` of each vector.
    """
    n_rt = row_starts.shape[0] - 1
    for b in range(x.shape[0]):
        s = _row_scale(x, b, input_range)
        scales[b] = s
        for t in range(n_rt):
            r0 = row_starts[t]
            for i in range(row_starts[t + 1] - r0):
                if s == 0.0:
                    xp[t, b, i] = 0.0
                else:
                    xp[t, b, i] = np.float32(dac_code(np.float64(x[b, r0 + i]), s, qmax))


@njit(cache=True, nogil=True)
def adc_accumulate(p, gain, step, qmax, t0, acc, scales, b0, y, last):  # pragma: no cover
    """ADC a group of row tiles' bit-line sums and add them into ``acc`` (serial, no GIL).

    ``acc[b, c] += sum_g step[t0 + g, c] * clip(rint(p[g, b, c] * gain[t0 + g, c]), -qmax,
    qmax)``, tiles in ascending order, float64. ``qmax == 0`` means an ideal ADC (``rint`` and
    ``clip`` skipped). When ``last``: ``y[b0 + b, c] = float32(acc[b, c] * scales[b])``.

    Args:
        p: (n_group, nb, n_out) float32 bit-line sums of row tiles t0 .. t0 + n_group - 1, in
            DAC units, for batch rows b0 .. b0 + nb - 1.
        gain: (n_row_tiles, n_out) float64 ``qmax_adc / (F * in_div)`` (0 where F == 0).
        step: (n_row_tiles, n_out) float64 ``F / qmax_adc`` in weight units.
        qmax: largest ADC code as float, 0 = ideal.
        t0: index of the group's first row tile.
        acc: (nb, n_out) float64 running digital sum (in/out).
        scales: (nb,) float64 DAC scale per vector of the block.
        b0: first batch row of the block in ``y``.
        y: (batch, n_out) float32 output, written only when ``last``.
        last: True for the group holding the last row tile.
    """
    n_g = p.shape[0]
    n_out = p.shape[2]
    for b in range(p.shape[1]):
        for g in range(n_g):
            t = t0 + g
            for c in range(n_out):
                v = np.float64(p[g, b, c]) * gain[t, c]
                if qmax > 0.0:
                    v = min(max(np.rint(v), -qmax), qmax)
                acc[b, c] += v * step[t, c]
        if last:
            s = scales[b]
            for c in range(n_out):
                y[b0 + b, c] = np.float32(acc[b, c] * s)


@njit(cache=True, parallel=True)
def scale_rows(y, factor):  # pragma: no cover - compiled
    """In place ``y[b, :] *= factor[b]`` (float64 product, float32 result)."""
    for b in prange(y.shape[0]):
        f = factor[b]
        for c in range(y.shape[1]):
            y[b, c] = np.float32(np.float64(y[b, c]) * f)
