"""A layer's weight matrix mapped onto a grid of crossbar tiles.

Layout: the weight is ``(out, in)`` (torch's layout). On the arrays it is transposed to
``(in, out)``: word lines (rows) carry inputs, bit lines (columns) carry outputs. The ``in``
axis is split into ``ceil(in / n_rows)`` contiguous, nearly equal row blocks, the ``out`` axis
into ``ceil(out / n_cols)`` column blocks (see :func:`balanced_splits`).

Internally the programmed cells are kept in weight units (``(G+ - G-) / k`` with
``k = (g_max - g_min) / w_max`` siemens per weight unit): Ohm's and Kirchhoff's laws are linear,
so the bit-line current ``I = V G`` is the product below times the constant ``k * V_read``.

With ``tile.line_resistance > 0`` each tile is solved as a resistive network
(:mod:`xbar.irdrop`): its G+ and G- arrays (two arrays sharing the word-line voltages) are
replaced by their effective conductance matrices ``T+``, ``T-`` and the tile acts as the
weights ``(T+ - T-) / k``; DAC, ADC and the digital sums are unchanged.
"""

from __future__ import annotations

import numpy as np

from . import irdrop, kernels
from .forward import tiled_forward
from .config import XbarConfig
from .errors import ConfigError, InputError, NotProgrammedError, ShapeError



def balanced_splits(n: int, block: int) -> tuple[int, ...]:
    """Boundaries of ``ceil(n / block)`` contiguous blocks whose sizes differ by at most 1.

    The first ``n % n_blocks`` blocks hold one element more. Example: ``n=129, block=128`` gives
    ``(0, 65, 129)``.

    Args:
        n: axis length (>= 1).
        block: largest block size (>= 1).

    Returns:
        ``n_blocks + 1`` increasing boundaries from 0 to ``n``.
    """
    n_blocks = -(-n // block)
    base, extra = divmod(n, n_blocks)
    sizes = [base + 1] * extra + [base] * (n_blocks - extra)
    return tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes)]))


def _as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise InputError(f"rng seed must be >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise InputError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def _finite(name: str, a: np.ndarray) -> None:
    if not np.isfinite(a).all():
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise InputError(f"{name} holds {bad} NaN/inf value(s) as float32; all values must be "
                         "finite and within float32's range (|v| <= 3.4e38)")


class TiledCrossbar:
    """One weight matrix programmed onto tiled RRAM crossbars (numpy + numba).

    Args:
        weight: (out, in) real array, the layer's nominal weights (any float dtype; stored as
            float32).
        config: the hardware model; ``None`` = ``XbarConfig()``.

    Raises:
        ConfigError: ``config`` is not an :class:`XbarConfig`.
        ShapeError: ``weight`` is not 2-D or has a zero-size axis.
        InputError: ``weight`` holds NaN/inf, or values beyond float32's range (~3.4e38) that
            become inf when stored as float32.

    Example:
        >>> xb = TiledCrossbar(np.eye(3), XbarConfig.ideal())
        >>> xb.program_ideal()
        >>> xb.matmul(np.ones((1, 3))).tolist()
        [[1.0, 1.0, 1.0]]
    """

    def __init__(self, weight: np.ndarray, config: XbarConfig | None = None) -> None:
        if config is None:
            config = XbarConfig()
        if not isinstance(config, XbarConfig):
            raise ConfigError(f"config must be an XbarConfig, got {type(config).__name__}")
        w = np.asarray(weight)
        if w.ndim != 2 or 0 in w.shape:
            raise ShapeError(f"weight must be a non-empty 2-D (out, in) array, got shape "
                             f"{w.shape}")
        if not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
            raise InputError(f"weight must be real-valued, got dtype {w.dtype}")
        with np.errstate(over="ignore"):                    # |w| > 3.4e38 -> inf, refused
            wt_nominal = np.ascontiguousarray(w.T, dtype=np.float32)   # (in, out)
        _finite("weight", wt_nominal)
        self._config = config
        self._n_out, self._n_in = (int(v) for v in w.shape)
        self._wt_nominal = wt_nominal
        w_max = float(np.abs(self._wt_nominal).max())
        self._w_max = w_max if w_max > 0.0 else 1.0
        tile = config.tile
        self._row_splits = balanced_splits(self._n_in, tile.n_rows)
        self._col_splits = balanced_splits(self._n_out, tile.n_cols)
        self._n_rt = len(self._row_splits) - 1
        self._row_starts = np.asarray(self._row_splits, dtype=np.int64)
        # Targets after finite-level quantisation (no variation, no faults).
        levels = config.device.levels
        self._wt_target = self._wt_nominal if levels is None else self._program_flat(None)
        self._full_scale = config.adc.full_scale * np.add.reduceat(
            np.abs(self._wt_target.astype(np.float64)), self._row_starts[:-1], axis=0)
        self._rpt = max(b - a for a, b in zip(self._row_splits[:-1], self._row_splits[1:]))
        self._wt_eff: np.ndarray | None = None
        self._wt_run: np.ndarray | None = None      # what matmul applies (IR drop included)
        self._tiles: np.ndarray | None = None
        self._noise_rng: np.random.Generator | None = None

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> XbarConfig:
        """The hardware model."""
        return self._config

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)`` of the weight matrix."""
        return (self._n_out, self._n_in)

    @property
    def tile_grid(self) -> tuple[int, int]:
        """``(n_row_tiles, n_col_tiles)``: tiles along ``in`` and along ``out``."""
        return (self._n_rt, len(self._col_splits) - 1)

    @property
    def n_tiles(self) -> int:
        """Number of physical arrays used."""
        r, c = self.tile_grid
        return r * c

    @property
    def n_cells(self) -> int:
        """RRAM cells in the used arrays: ``2 * n_tiles * n_rows * n_cols`` (G+/G- pairs)."""
        return 2 * self.n_tiles * self._config.tile.n_rows * self._config.tile.n_cols

    @property
    def utilisation(self) -> float:
        """Fraction of array positions holding a weight, in (0, 1].

        ``utilisation = in * out / (n_tiles * n_rows * n_cols)``.
        """
        return self._n_in * self._n_out / (self.n_cells // 2)

    @property
    def row_splits(self) -> tuple[int, ...]:
        """Row-tile boundaries along ``in`` (``n_row_tiles + 1`` ints, 0 ... in)."""
        return self._row_splits

    @property
    def col_splits(self) -> tuple[int, ...]:
        """Column-tile boundaries along ``out`` (``n_col_tiles + 1`` ints, 0 ... out)."""
        return self._col_splits

    @property
    def weight_scale(self) -> float:
        """``w_max = max |W|`` (weight units) mapped onto ``g_max - g_min``; 1.0 if W == 0."""
        return self._w_max

    @property
    def is_programmed(self) -> bool:
        """True after :meth:`program` or :meth:`program_ideal`."""
        return self._wt_eff is not None

    def adc_full_scale(self) -> np.ndarray:
        """ADC full scale F of every bit line of every tile, weight units.

        ``F[t, c] = adc.full_scale * sum_{r in row tile t} |w_target[c, r]|`` where
        ``w_target`` are the level-quantised nominal weights (never the varied ones).

        Returns:
            (n_row_tiles, out) float64 array (a copy).
        """
        return self._full_scale.copy()

    # ------------------------------------------------------------------ programming
    def _program_flat(self, rng: np.random.Generator | None) -> np.ndarray:
        d = self._config.device
        n = self._wt_nominal.size
        empty = np.empty(0, dtype=np.float32)
        z_pos = z_neg = u_fault = empty
        device_level = d.level == "device"
        if rng is not None:
            if d.sigma > 0.0:
                z_pos = rng.standard_normal(n, dtype=np.float32)
                if device_level:
                    z_neg = rng.standard_normal(n, dtype=np.float32)
            if d.has_faults:
                u_fault = rng.random(2 * n, dtype=np.float32)
        out = np.empty((self._n_in, self._n_out), dtype=np.float32)
        target = self._wt_nominal
        if rng is not None and d.sigma > 0.0 and d.mean_gain_calibration:
            target = target * np.float32(d.programming_gain)     # E[w_eff] = w
        program = (kernels.program_cells if n >= kernels.PARALLEL_MIN_CELLS
                   else kernels.program_cells_serial)       # the same cells either way
        program(target.reshape(-1), z_pos, z_neg, u_fault, float(d.sigma), device_level,
                self._w_max, float(d.g_min), float(d.g_max), int(d.levels or 0),
                float(d.stuck_min_rate), float(d.stuck_max_rate), out.reshape(-1))
        return out

    def _set_cells(self, wt_eff: np.ndarray) -> None:
        self._wt_eff = wt_eff
        cfg = self._config
        # With read noise the IR-drop solve runs per matmul call (on the noisy cells).
        solve_now = cfg.tile.has_ir_drop and cfg.device.read_noise == 0.0
        self._wt_run = self._ir_weights(wt_eff) if solve_now else wt_eff
        self._tiles = self._to_tiles(self._wt_run) if cfg.adc.bits is not None else None

    def _ir_weights(self, wt: np.ndarray) -> np.ndarray:
        """Weights every tile applies with line resistance: ``(T+ - T-) / k`` per tile.

        Each (row tile, column tile) block sits in the top-left corner of a full
        ``n_rows x n_cols`` array; unused cells hold g_min and unused word lines 0 V.

        Args:
            wt: (in, out) float32 programmed weights ``(G+ - G-) / k``.

        Returns:
            (in, out) float32.

        Raises:
            ConvergenceError: the solver did not reach ``tile.tolerance``.
        """
        tile, d = self._config.tile, self._config.device
        k = (d.g_max - d.g_min) / self._w_max
        out = np.empty_like(wt)
        for r0, r1 in zip(self._row_splits[:-1], self._row_splits[1:]):
            for c0, c1 in zip(self._col_splits[:-1], self._col_splits[1:]):
                block = wt[r0:r1, c0:c1].astype(np.float64)
                acc = np.zeros((r1 - r0, c1 - c0))
                for sign in (1.0, -1.0):
                    g = np.full((tile.n_rows, tile.n_cols), d.g_min)
                    g[: r1 - r0, : c1 - c0] += np.maximum(sign * block, 0.0) * k
                    t = irdrop.transfer_matrix(
                        g, tile.line_resistance, n_driven=r1 - r0,
                        read_voltage=tile.read_voltage, tol=tile.tolerance,
                        max_sweeps=tile.max_sweeps)
                    acc += sign * t[:, : c1 - c0]
                out[r0:r1, c0:c1] = acc / k
        return out

    def _to_tiles(self, wt: np.ndarray) -> np.ndarray:
        """(in, out) -> padded (n_row_tiles, rows_per_tile, out); a view when splits are even."""
        if self._n_in == self._n_rt * self._rpt:
            return wt.reshape(self._n_rt, self._rpt, self._n_out)
        tiles = np.zeros((self._n_rt, self._rpt, self._n_out), dtype=np.float32)
        for t in range(self._n_rt):
            r0, r1 = self._row_splits[t], self._row_splits[t + 1]
            tiles[t, : r1 - r0] = wt[r0:r1]
        return tiles

    def program(self, rng: np.random.Generator | int) -> None:
        """Draw one device sample: variation and faults on every cell (paper eq. 1-2).

        Weight level: ``w_eff = w_target * exp(sigma * z)``; device level:
        ``G± = G±_target * exp(sigma * z±)``; stuck cells are set to g_min / g_max (with
        ``device.mean_gain_calibration`` the target is ``w * exp(-sigma^2 / 2)``). Normals are
        drawn as float32 with ``rng`` in (in, out) order, so a seed gives the same sample
        whatever the thread count.

        Args:
            rng: a ``np.random.Generator`` (advanced) or an int seed (>= 0).

        Raises:
            InputError: ``rng`` is neither.
        """
        gen = _as_generator(rng)
        self._set_cells(self._program_flat(gen))
        self._noise_rng = None
        if self._config.device.read_noise > 0:
            try:
                self._noise_rng = gen.spawn(1)[0]
            except (TypeError, ValueError):  # bit generator without a SeedSequence
                self._noise_rng = np.random.default_rng(int(gen.integers(2**63)))

    def program_ideal(self) -> None:
        """Program the targets exactly (level quantisation only; no variation, no faults)."""
        self._set_cells(self._wt_target)  # never written in place, so no copy
        # Read noise is a read-time effect and stays on; its default stream is seed 0.
        self._noise_rng = np.random.default_rng(0)

    def target_weight(self) -> np.ndarray:
        """Nominal weights after level quantisation (what :meth:`program_ideal` programs).

        Returns:
            (out, in) float32 array (a copy); equals the input weight when ``levels`` is None.
        """
        return np.ascontiguousarray(self._wt_target.T)

    def effective_weight(self) -> np.ndarray:
        """Weights the programmed cells represent, ``(G+ - G-) / k``, without read noise.

        Returns:
            (out, in) float32 array (a copy).

        Raises:
            NotProgrammedError: before :meth:`program` / :meth:`program_ideal`.
        """
        self._check_programmed()
        return np.ascontiguousarray(self._wt_eff.T)

    def circuit_weight(self) -> np.ndarray:
        """Weights the tiles apply, IR drop included, without read noise.

        Equals :meth:`effective_weight` when ``tile.line_resistance == 0``; otherwise every
        tile's ``(T+ - T-) / k`` (see :mod:`xbar.irdrop`).

        Returns:
            (out, in) float32 array (a copy).

        Raises:
            NotProgrammedError: before :meth:`program` / :meth:`program_ideal`.
            ConvergenceError: the IR-drop solver did not converge (read-noise configs solve
                here rather than at programming time).
        """
        self._check_programmed()
        cfg = self._config
        noisy_ir = cfg.tile.has_ir_drop and cfg.device.read_noise > 0.0
        wt = self._ir_weights(self._wt_eff) if noisy_ir else self._wt_run
        return np.ascontiguousarray(wt.T)

    def _check_programmed(self) -> None:
        if self._wt_eff is None:
            raise NotProgrammedError("TiledCrossbar is not programmed; call program(rng) or "
                                     "program_ideal() first")

    # ------------------------------------------------------------------ inference
    def matmul(self, x: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Analog matrix-vector products ``y ~= x @ W_eff.T`` through DAC, tiles and ADC.

        Per input vector: DAC (scale ``s``, integer codes), per row tile the bit-line sums
        ``p = codes @ G`` (Ohm + Kirchhoff, one batched GEMM), ADC per tile bit line, digital
        sum over row tiles, times ``s``. See ``xbar/README.md`` for the equations.

        Args:
            x: (batch, in) or (in,) real inputs.
            rng: generator or seed for read noise (only used when ``device.read_noise > 0``);
                None = a stream spawned from the generator given to :meth:`program` (after
                :meth:`program_ideal`: a stream seeded with 0).

        Returns:
            (batch, out) float32 (or (out,) for 1-D ``x``).

        Raises:
            NotProgrammedError: before programming.
            ShapeError: ``x`` is not (batch, in) / (in,).
            InputError: ``x`` holds NaN/inf (also after the cast to float32), or the output
                overflows float32.
            ConvergenceError: with read noise and line resistance, the IR-drop solve of the
                noisy cells did not converge.
        """
        self._check_programmed()
        x = np.asarray(x)
        one = x.ndim == 1
        if one:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self._n_in or x.shape[0] == 0:
            raise ShapeError(f"x must have shape (batch >= 1, {self._n_in}) or "
                             f"({self._n_in},), got {np.shape(x) if not one else x.shape[1:]}")
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise InputError(f"x must be real-valued, got dtype {x.dtype}")
        with np.errstate(over="ignore"):                    # |x| > 3.4e38 -> inf, refused
            x = np.ascontiguousarray(x, dtype=np.float32)
        _finite("x", x)
        wt, tiles = self._wt_run, self._tiles
        if self._config.device.read_noise > 0.0:
            wt = self._noisy(rng)
            if self._config.tile.has_ir_drop:
                wt = self._ir_weights(wt)
            tiles = self._to_tiles(wt) if tiles is not None else None
        with np.errstate(over="ignore", invalid="ignore"):
            y = self._forward(x, wt, tiles)
        if not np.isfinite(y).all():
            raise InputError("the output overflows float32 (inf/NaN): inputs or weights too "
                             "large for this layer; scale them down")
        return y[0] if one else y

    def _noisy(self, rng: np.random.Generator | int | None) -> np.ndarray:
        gen = self._noise_rng if rng is None else _as_generator(rng)
        z = gen.standard_normal(self._wt_eff.size, dtype=np.float32)
        wt = np.empty_like(self._wt_eff)
        kernels.read_noise(self._wt_eff.reshape(-1), z, float(self._config.device.read_noise),
                           wt.reshape(-1))
        return wt

    def _forward(self, x: np.ndarray, wt: np.ndarray, tiles: np.ndarray | None) -> np.ndarray:
        return tiled_forward(self, x, wt, tiles)
