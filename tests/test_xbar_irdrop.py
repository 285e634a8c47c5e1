import dataclasses
import warnings

import numpy as np
import pytest

import naive
from xbar import (ConfigError, ConvergenceError, DeviceConfig, InputError, ShapeError,
                  TileConfig, TiledCrossbar, XbarConfig, irdrop)

G_MIN, G_MAX = 1e-6, 100e-6


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("m,n,r_word,r_bit", [(1, 1, 1.0, 1.0), (1, 6, 2.0, 1.0),
                                              (6, 1, 1.0, 3.0), (5, 7, 1.0, 1.0),
                                              (9, 4, 10.0, 0.5)])
def test_solver_matches_dense_nodal_analysis(m, n, r_word, r_bit):
    rng = np.random.default_rng(m * 10 + n)
    g = rng.uniform(G_MIN, G_MAX, (m, n))
    v = rng.uniform(-0.3, 0.3, (4, m))
    cur, sweeps = irdrop.output_currents(g, v, r_word, r_bit)
    assert sweeps >= 1
    assert _rel(cur, naive.irdrop_currents(g, v, r_word, r_bit)) < 1e-6


def test_strong_ir_drop_still_matches_oracle():
    rng = np.random.default_rng(3)
    g = rng.uniform(1e-3, 1e-2, (12, 12))       # G R n^2 ~ 1: strong coupling
    v = rng.uniform(0.0, 0.2, (2, 12))
    cur, _ = irdrop.output_currents(g, v, 1.0, omega=1.3)
    assert _rel(cur, naive.irdrop_currents(g, v, 1.0)) < 1e-6


def test_one_cell_closed_form():
    # driver segment + cell + segment into ground in series
    cur, _ = irdrop.output_currents(np.array([[1e-4]]), np.array([0.2]), 50.0)
    assert cur[0] == pytest.approx(0.2 / (50.0 + 1e4 + 50.0), rel=1e-9)


def test_one_word_line_ladder_closed_form():
    # 1 x N: each column is the cell in series with one bit segment (h_j); the word line is
    # the ladder Y_j = h_j + 1 / (R + 1 / Y_{j+1}), driven through one more R.
    rng = np.random.default_rng(0)
    n, r, volt = 8, 20.0, 0.3
    g = rng.uniform(G_MIN, G_MAX, n)
    h = 1.0 / (1.0 / g + r)
    y = [0.0] * n
    y[-1] = h[-1]
    for j in range(n - 2, -1, -1):
        y[j] = h[j] + 1.0 / (r + 1.0 / y[j + 1])
    node, expect = volt, []
    u = node * (1.0 / y[0]) / (r + 1.0 / y[0])                 # divider at the first node
    for j in range(n):
        expect.append(u * h[j])
        if j < n - 1:                                          # current left for the rest
            rest = u * (y[j] - h[j])
            u = u - rest * r
    cur, _ = irdrop.output_currents(g[None, :], np.array([volt]), r)
    assert _rel(cur, np.array(expect)) < 1e-9


def test_matches_badcrossbar():
    with warnings.catch_warnings():                            # no cairo: plotting is off
        warnings.simplefilter("ignore", ImportWarning)
        try:
            import badcrossbar
        except ImportError:
            pytest.skip("badcrossbar is not installed (make setup installs it)")
    rng = np.random.default_rng(7)
    for m, n, r in [(3, 4, 1.0), (8, 5, 2.5), (6, 6, 0.5)]:
        g = rng.uniform(G_MIN, G_MAX, (m, n))
        v = rng.uniform(-0.2, 0.2, (m, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = badcrossbar.compute(v, 1.0 / g, r, node_voltages=False, all_currents=False)
        cur, _ = irdrop.output_currents(g, v.T, r)
        assert _rel(cur, np.asarray(sol.currents.output)) < 1e-6


def test_transfer_matrix_is_linear_response():
    rng = np.random.default_rng(1)
    g = rng.uniform(G_MIN, G_MAX, (6, 5))
    t = irdrop.transfer_matrix(g, 5.0, n_driven=4, read_voltage=0.1)
    v = np.zeros((3, 6))
    v[:, :4] = rng.uniform(-0.2, 0.2, (3, 4))
    assert _rel(v[:, :4] @ t, naive.irdrop_currents(g, v, 5.0)) < 1e-6
    assert np.all(t < g[:4] + 1e-18)                            # IR drop only loses current


def test_non_convergence_raises():
    g = np.full((32, 32), 1e-3)
    with pytest.raises(ConvergenceError, match="did not converge") as info:
        irdrop.output_currents(g, np.ones(32), 10.0, tol=1e-12, max_sweeps=2)
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("call,err", [
    (lambda: irdrop.output_currents(np.ones(3), np.ones(3), 1.0), ShapeError),
    (lambda: irdrop.output_currents(-np.ones((2, 2)), np.ones(2), 1.0), InputError),
    (lambda: irdrop.output_currents(np.ones((2, 2)), np.ones(3), 1.0), ShapeError),
    (lambda: irdrop.output_currents(np.ones((2, 2)), [np.nan, 1], 1.0), InputError),
    (lambda: irdrop.output_currents(np.ones((2, 2)), np.ones(2), 0.0), InputError),
    (lambda: irdrop.output_currents(np.ones((2, 2)), np.ones(2), 1.0, tol=0.0), InputError),
    (lambda: irdrop.output_currents(np.ones((2, 2)), np.ones(2), 1.0, max_sweeps=0),
     InputError),
    (lambda: irdrop.output_currents(np.ones((2, 2)), np.ones(2), 1.0, omega=2.0), InputError),
    (lambda: irdrop.transfer_matrix(np.ones((2, 2)), 1.0, n_driven=3), ShapeError),
    (lambda: irdrop.transfer_matrix(np.ones((2, 2)), 1.0, read_voltage=0.0), InputError),
])
def test_solver_argument_errors(call, err):
    with pytest.raises(err):
        call()


# ------------------------------------------------------------------ config and TiledCrossbar
@pytest.mark.parametrize("make,path", [
    (lambda: TileConfig(line_resistance=-1.0), "tile.line_resistance"),
    (lambda: TileConfig(line_resistance=float("nan")), "tile.line_resistance"),
    (lambda: TileConfig(read_voltage=0.0), "tile.read_voltage"),
    (lambda: TileConfig(tolerance=0.0), "tile.tolerance"),
    (lambda: TileConfig(tolerance=0.5), "tile.tolerance"),
    (lambda: TileConfig(max_sweeps=0), "tile.max_sweeps"),
    (lambda: TileConfig(max_sweeps=2.0), "tile.max_sweeps"),
])
def test_tile_config_validation(make, path):
    with pytest.raises(ConfigError, match=path):
        make()


def _cfg(n_rows, n_cols, r, **dev):
    return XbarConfig(tile=TileConfig(n_rows, n_cols, line_resistance=r),
                      device=DeviceConfig(sigma=0.0, **dev),
                      dac=dataclasses.replace(XbarConfig.ideal().dac),
                      adc=dataclasses.replace(XbarConfig.ideal().adc))


def test_config_roundtrip_and_ideal_flag():
    cfg = _cfg(8, 8, 1.5)
    assert XbarConfig.from_dict(cfg.to_dict()) == cfg
    assert not cfg.is_ideal and cfg.tile.has_ir_drop
    assert _cfg(8, 8, 0.0).is_ideal


def test_zero_resistance_is_exactly_the_ideal_path():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((9, 13)).astype(np.float32)
    x = rng.standard_normal((4, 13)).astype(np.float32)
    xb = TiledCrossbar(w, _cfg(4, 4, 0.0))
    xb.program_ideal()
    np.testing.assert_array_equal(xb.matmul(x), x @ w.T)
    np.testing.assert_array_equal(xb.circuit_weight(), xb.effective_weight())


def _oracle_matmul(x, w, n_rows, n_cols, r, g_min=G_MIN, g_max=G_MAX):
    """Per tile: padded G+/G- arrays solved densely, (I+ - I-) / k, summed over row tiles."""
    w = np.asarray(w, dtype=np.float64)
    k = (g_max - g_min) / np.abs(w).max()
    rows = naive.xbar_splits(w.shape[1], n_rows)
    cols = naive.xbar_splits(w.shape[0], n_cols)
    y = np.zeros((x.shape[0], w.shape[0]))
    for r0, r1 in zip(rows[:-1], rows[1:]):
        volts = np.zeros((x.shape[0], n_rows))
        volts[:, : r1 - r0] = x[:, r0:r1]
        for c0, c1 in zip(cols[:-1], cols[1:]):
            block = w[c0:c1, r0:r1].T
            for sign in (1.0, -1.0):
                g = np.full((n_rows, n_cols), g_min)
                g[: r1 - r0, : c1 - c0] += np.maximum(sign * block, 0) * k
                y[:, c0:c1] += sign * naive.irdrop_currents(g, volts, r)[:, : c1 - c0] / k
    return y


def test_tiled_crossbar_matches_per_tile_oracle():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((11, 19)).astype(np.float32)       # non-multiples of the tile
    x = rng.standard_normal((3, 19)).astype(np.float32)
    xb = TiledCrossbar(w, _cfg(8, 6, 2.0))
    xb.program_ideal()
    want = _oracle_matmul(x.astype(np.float64), w, 8, 6, 2.0)
    assert _rel(xb.matmul(x), want) < 1e-5
    assert _rel(xb.matmul(x[0]), want[0]) < 1e-5
    assert _rel(x @ xb.circuit_weight().T, want) < 1e-5
    assert _rel(xb.matmul(x), x @ w.T) > 1e-3                 # the drop is visible


def test_larger_tiles_lose_more():
    rng = np.random.default_rng(4)
    w = rng.uniform(-1, 1, (64, 64)).astype(np.float32)
    x = rng.uniform(0, 1, (8, 64)).astype(np.float32)
    errs = []
    for n in (16, 64):
        xb = TiledCrossbar(w, _cfg(n, n, 1.0))
        xb.program_ideal()
        errs.append(_rel(xb.matmul(x), x @ w.T))
    assert 0 < errs[0] < errs[1]


def test_read_noise_path_solves_noisy_cells():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((5, 7)).astype(np.float32)
    x = rng.standard_normal((2, 7)).astype(np.float32)
    cfg = dataclasses.replace(_cfg(4, 4, 3.0), device=DeviceConfig(sigma=0.0, read_noise=0.05))
    xb = TiledCrossbar(w, cfg)
    xb.program(0)
    y1, y2 = xb.matmul(x, rng=1), xb.matmul(x, rng=1)
    np.testing.assert_array_equal(y1, y2)
    ideal_ir = x @ xb.circuit_weight().T
    assert 1e-4 < _rel(y1, ideal_ir) < 0.5


def test_crossbar_raises_convergence_error():
    w = np.ones((32, 32), dtype=np.float32)
    cfg = XbarConfig(tile=TileConfig(32, 32, line_resistance=50.0, tolerance=1e-12,
                                     max_sweeps=2), device=DeviceConfig(sigma=0.0))
    xb = TiledCrossbar(w, cfg)
    with pytest.raises(ConvergenceError, match="tile.max_sweeps"):
        xb.program_ideal()


def test_warmup_compiles_the_solver():
    import xbar

    xbar.warmup()
    assert irdrop.solve_network.signatures
