"""IR drop: one crossbar tile solved as the resistive network it is.

Topology (the passive crossbar of Joksas and Mehonic's ``badcrossbar``): ``m`` word lines
(rows) and ``n`` bit lines (columns); the cell ``G[i, j]`` (siemens) joins word-line node
``u[i, j]`` to bit-line node ``v[i, j]``. Every wire segment has resistance ``R`` (ohm; word and
bit lines may differ). Word line ``i`` is driven with ``V[i]`` at its column-0 end through one
segment (source -> ``u[i, 0]`` -> ... -> ``u[i, n-1]``, open at the far end); bit line ``j``
runs from ``v[0, j]`` (open end) to ``v[m-1, j]`` and through one more segment into a virtual
ground, where the output current ``I[j] = v[m-1, j] / R_bit`` is read.

Kirchhoff's current law at every node, with ``a = 1 / R_word`` and ``b = 1 / R_bit``::

    word node (i, j):  a (u[i,j-1] - u[i,j]) + a (u[i,j+1] - u[i,j]) + G[i,j] (v[i,j] - u[i,j]) = 0
    bit node (i, j):   b (v[i-1,j] - v[i,j]) + b (v[i+1,j] - v[i,j]) + G[i,j] (u[i,j] - v[i,j]) = 0

with ``u[i, -1] = V[i]``, no ``u[i, n]`` term, no ``v[-1, j]`` term and ``v[m, j] = 0``.
Given the bit-line voltages each word line is a tridiagonal system in ``u[i, :]`` (and vice
versa), so the solver alternates exact Thomas solves of all word lines and of all bit lines:
block (line) Gauss-Seidel, with optional over-relaxation ``x <- x + omega (x_line - x)``
(line SOR, ``0 < omega < 2``; the system matrix is a symmetric positive definite M-matrix, so
the sweeps converge for any such omega). The sweeps start from the ideal voltages
(``u = V``, ``v = 0``: the zero-resistance solution) and stop when no node moved by more than
``tol * max |V|`` in a sweep.

The network is linear, so the tile acts on any input vector through its effective
conductance matrix ``T`` (``I = V @ T``; ``T = G`` when ``R = 0``). :func:`transfer_matrix`
finds ``T`` from one solve per word line (``V = V_read e_i``, all word lines in parallel), and
:class:`~xbar.crossbar.TiledCrossbar` then applies ``T`` to every vector of every batch with a
GEMM: the same result as solving each vector (to ``tol``) at a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .errors import ConvergenceError, InputError, ShapeError


@njit(cache=True)
def _factor(diag, off, cp, m):  # pragma: no cover - compiled
    """Thomas forward factors of tridiag(off, diag, off): ``cp`` (super) and ``m`` (1/pivot)."""
    n = diag.shape[0]
    piv = diag[0]
    m[0] = 1.0 / piv
    cp[0] = off * m[0]
    for k in range(1, n):
        piv = diag[k] - off * cp[k - 1]
        m[k] = 1.0 / piv
        cp[k] = off * m[k]


# Long (~65 lines): one Numba kernel, the word-line and bit-line relaxation sweeps of one
# batch in a single prange loop; helpers would have to pass the whole node state back and forth.
@njit(cache=True, parallel=True)
def solve_network(g, volts, r_word, r_bit, tol, max_sweeps, omega, out, sweeps):
    """Output currents of one tile for a batch of word-line voltage vectors (line SOR).

    Args:
        g: (m, n) float64 cell conductances, siemens (>= 0).
        volts: (batch, m) float64 voltages applied at the word-line drivers, volt.
        r_word: word-line segment resistance, ohm (> 0).
        r_bit: bit-line segment resistance, ohm (> 0).
        tol: stop when the largest node-voltage update of a sweep is ``<= tol * max |V|``.
        max_sweeps: most sweeps (word lines then bit lines) per vector.
        omega: over-relaxation factor in (0, 2); 1 = plain line Gauss-Seidel.
        out: (batch, n) float64, written with the bit-line output currents, ampere.
        sweeps: (batch,) int64, written with the sweeps used (-1 = did not converge).
    """
    m, n = g.shape
    batch = volts.shape[0]
    a = 1.0 / r_word
    b = 1.0 / r_bit
    # Word-line factors (one tridiagonal per row) and bit-line factors (one per column).
    wc = np.empty((m, n))
    wm = np.empty((m, n))
    diag = np.empty(n)
    for i in range(m):
        for j in range(n):
            diag[j] = g[i, j] + (2.0 * a if j < n - 1 else a)
        _factor(diag, -a, wc[i], wm[i])
    bc = np.empty((n, m))
    bm = np.empty((n, m))
    diag = np.empty(m)
    for j in range(n):
        for i in range(m):
            diag[i] = g[i, j] + (2.0 * b if i > 0 else b)
        _factor(diag, -b, bc[j], bm[j])
    for k in prange(batch):
        vmax = 0.0
        for i in range(m):
            vmax = max(vmax, abs(volts[k, i]))
        if vmax == 0.0:
            out[k, :] = 0.0
            sweeps[k] = 0
            continue
        u = np.empty((m, n))
        v = np.zeros((m, n))
        for i in range(m):
            u[i, :] = volts[k, i]
        line = np.empty(max(m, n))
        done = -1
        for s in range(1, max_sweeps + 1):
            delta = 0.0
            # Word lines, given the bit-line voltages.
            for i in range(m):
                d = (g[i, 0] * v[i, 0] + a * volts[k, i]) * wm[i, 0]
                line[0] = d
                for j in range(1, n):
                    d = (g[i, j] * v[i, j] + a * d) * wm[i, j]
                    line[j] = d
                for j in range(n - 2, -1, -1):
                    line[j] -= wc[i, j] * line[j + 1]
                for j in range(n):
                    step = omega * (line[j] - u[i, j])
                    u[i, j] += step
                    delta = max(delta, abs(step))
            # Bit lines, given the word-line voltages.
            for j in range(n):
                d = g[0, j] * u[0, j] * bm[j, 0]
                line[0] = d
                for i in range(1, m):
                    d = (g[i, j] * u[i, j] + b * d) * bm[j, i]
                    line[i] = d
                for i in range(m - 2, -1, -1):
                    line[i] -= bc[j, i] * line[i + 1]
                for i in range(m):
                    step = omega * (line[i] - v[i, j])
                    v[i, j] += step
                    delta = max(delta, abs(step))
            if delta <= tol * vmax:
                done = s
                break
        for j in range(n):
            out[k, j] = v[m - 1, j] * b
        sweeps[k] = done


def _check(g: np.ndarray, r_word: float, r_bit: float, tol: float, max_sweeps: int,
           omega: float) -> np.ndarray:
    g = np.ascontiguousarray(g, dtype=np.float64)
    if g.ndim != 2 or 0 in g.shape:
        raise ShapeError(f"conductances must be a non-empty 2-D (rows, cols) array, got shape "
                         f"{g.shape}")
    if not np.isfinite(g).all() or (g < 0).any():
        raise InputError("conductances must be finite and >= 0 siemens")
    for name, value in (("r_word", r_word), ("r_bit", r_bit)):
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a finite resistance > 0 ohm, got {value}")
    if not (np.isfinite(tol) and tol > 0):
        raise InputError(f"tol must be > 0, got {tol}")
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, (int, np.integer)) \
            or max_sweeps < 1:
        raise InputError(f"max_sweeps must be an int >= 1, got {max_sweeps!r}")
    if not (0.0 < omega < 2.0):
        raise InputError(f"omega must be in (0, 2), got {omega}")
    return g


def output_currents(g: np.ndarray, volts: np.ndarray, r_word: float, r_bit: float | None = None,
                    *, tol: float = 1e-10, max_sweeps: int = 2000, omega: float = 1.0
                    ) -> tuple[np.ndarray, int]:
    """Bit-line output currents of one tile with line resistance (see the module docstring).

    Args:
        g: (m, n) cell conductances, siemens (>= 0).
        volts: (batch, m) or (m,) word-line driver voltages, volt.
        r_word: word-line segment resistance, ohm (> 0).
        r_bit: bit-line segment resistance, ohm (> 0); None = ``r_word``.
        tol: relative convergence tolerance on node voltages (> 0).
        max_sweeps: most line sweeps per vector (>= 1).
        omega: line over-relaxation factor in (0, 2).

    Returns:
        ``(currents, sweeps)``: (batch, n) float64 amperes (or (n,) for 1-D ``volts``) and
        the most sweeps any vector needed.

    Shape:
        g: (m, n); volts: (batch, m) -> (batch, n).

    Raises:
        ShapeError: ``g`` is not 2-D or ``volts`` does not have ``m`` entries per vector.
        InputError: a negative/non-finite conductance, voltage, resistance or solver setting.
        ConvergenceError: some vector did not converge within ``max_sweeps``.
    """
    r_bit = r_word if r_bit is None else r_bit
    g = _check(g, r_word, r_bit, tol, max_sweeps, omega)
    v = np.asarray(volts, dtype=np.float64)
    one = v.ndim == 1
    v = np.ascontiguousarray(v[None, :] if one else v)
    if v.ndim != 2 or v.shape[1] != g.shape[0]:
        raise ShapeError(f"volts must have shape (batch, {g.shape[0]}) or ({g.shape[0]},), "
                         f"got {np.shape(volts)}")
    if not np.isfinite(v).all():
        raise InputError("volts must be finite")
    out = np.empty((v.shape[0], g.shape[1]))
    sweeps = np.empty(v.shape[0], dtype=np.int64)
    solve_network(g, v, float(r_word), float(r_bit), float(tol), int(max_sweeps), float(omega),
                  out, sweeps)
    if (sweeps < 0).any():
        bad = int((sweeps < 0).sum())
        raise ConvergenceError(
            f"IR-drop solver did not converge for {bad} of {v.shape[0]} input vector(s) within "
            f"{max_sweeps} sweeps (tol {tol}, tile {g.shape[0]}x{g.shape[1]}, "
            f"R {r_word}/{r_bit} ohm, max G {g.max():.3g} S); raise tile.max_sweeps or "
            f"tile.tolerance, or use smaller tiles / line resistance")
    return (out[0] if one else out), int(sweeps.max())


def transfer_matrix(g: np.ndarray, r_word: float, r_bit: float | None = None, *,
                    n_driven: int | None = None, read_voltage: float = 1.0, tol: float = 1e-10,
                    max_sweeps: int = 2000, omega: float = 1.0) -> np.ndarray:
    """Effective conductance matrix ``T`` of a tile with line resistance: ``I = V @ T``.

    Row ``i`` of ``T`` is the output-current vector for ``V = read_voltage * e_i`` divided by
    ``read_voltage`` (the network is linear, so ``T`` does not depend on it beyond rounding).

    Args:
        g: (m, n) cell conductances, siemens.
        r_word: word-line segment resistance, ohm (> 0).
        r_bit: bit-line segment resistance, ohm (> 0); None = ``r_word``.
        n_driven: only the first ``n_driven`` word lines carry inputs (the others are held at
            0 V), so only those rows of ``T`` are computed; None = all ``m``.
        read_voltage: voltage of the unit solves, volt (> 0).
        tol: relative convergence tolerance (> 0).
        max_sweeps: most line sweeps (>= 1).
        omega: line over-relaxation factor in (0, 2).

    Returns:
        (n_driven, n) float64 siemens; equals ``g[:n_driven]`` as ``R -> 0``.

    Raises:
        ShapeError, InputError, ConvergenceError: as :func:`output_currents`.
    """
    m = np.shape(g)[0] if np.ndim(g) == 2 else 0
    k = m if n_driven is None else int(n_driven)
    if not 1 <= k <= max(m, 1):
        raise ShapeError(f"n_driven must be in [1, {m}], got {n_driven}")
    if not (np.isfinite(read_voltage) and read_voltage > 0):
        raise InputError(f"read_voltage must be > 0 volt, got {read_voltage}")
    volts = np.zeros((k, m))
    volts[np.arange(k), np.arange(k)] = read_voltage
    cur, _ = output_currents(g, volts, r_word, r_bit, tol=tol, max_sweeps=max_sweeps,
                             omega=omega)
    return cur / read_voltage
