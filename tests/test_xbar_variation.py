import numba
import numpy as np
import pytest

import xbar.crossbar
import xbar.kernels
import xbar.forward
import naive
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, TiledCrossbar, XbarConfig


def cfg(sigma=0.5, level="weight", bits=None, **dev):
    return XbarConfig(tile=TileConfig(64, 64), device=DeviceConfig(sigma=sigma, level=level, **dev),
                      dac=DACConfig(bits=bits), adc=ADCConfig(bits=bits))


def weights(shape=(300, 400), seed=0):
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    w[np.abs(w) < 1e-3] = 1e-3  # keep log ratios defined
    return w


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0])
def test_weight_level_log_ratio_statistics(sigma):
    w = weights()
    xb = TiledCrossbar(w, cfg(sigma))
    xb.program(7)
    lr = np.log(xb.effective_weight().astype(np.float64) / w)
    # 120k samples: standard error of the mean is sigma / 346; tolerances are > 5 of them.
    assert abs(lr.mean()) < 0.02 * sigma + 1e-3
    assert lr.std() == pytest.approx(sigma, rel=0.01)


def test_weight_level_matches_oracle_with_same_normals():
    w = weights((50, 70))
    xb = TiledCrossbar(w, cfg(0.5))
    xb.program(11)
    z = np.random.default_rng(11).standard_normal(w.size, dtype=np.float32).reshape(70, 50).T
    ref = naive.xbar_program_cells(w, z, None, 0.5, "weight", 1e-6, 1e-4)
    np.testing.assert_allclose(xb.effective_weight(), ref, rtol=1e-6)


def test_device_level_matches_oracle_with_same_normals():
    w = weights((40, 30))
    xb = TiledCrossbar(w, cfg(0.3, "device", g_min=2e-6, g_max=50e-6))
    xb.program(3)
    rng = np.random.default_rng(3)
    zp = rng.standard_normal(w.size, dtype=np.float32).reshape(30, 40).T
    zn = rng.standard_normal(w.size, dtype=np.float32).reshape(30, 40).T
    ref = naive.xbar_program_cells(w, zp, zn, 0.3, "device", 2e-6, 50e-6)
    np.testing.assert_allclose(xb.effective_weight(), ref, rtol=1e-5,
                               atol=1e-6 * np.abs(w).max())


def test_device_level_with_zero_g_min_is_weight_level():
    w = weights()
    xb = TiledCrossbar(w, cfg(0.5, "device", g_min=0.0))
    xb.program(8)
    lr = np.log(xb.effective_weight().astype(np.float64) / w)
    assert abs(lr.mean()) < 0.01 and lr.std() == pytest.approx(0.5, rel=0.01)
    xb2 = TiledCrossbar(w, cfg(0.5, "device", g_min=10e-6))
    xb2.program(8)
    lr2 = np.log(np.abs(xb2.effective_weight().astype(np.float64) / w))
    assert lr2.std() > 0.55  # the G- cell at g_min adds error of its own


def test_seeds_repeat_and_differ():
    w = weights((100, 130))
    x = np.random.default_rng(1).standard_normal((20, 130)).astype(np.float32)
    xb = TiledCrossbar(w, cfg(0.5, bits=8))
    xb.program(5)
    a, ya = xb.effective_weight(), xb.matmul(x)
    xb.program(np.random.default_rng(5))
    np.testing.assert_array_equal(xb.effective_weight(), a)
    np.testing.assert_array_equal(xb.matmul(x), ya)
    xb.program(6)
    assert not np.array_equal(xb.effective_weight(), a)


@pytest.mark.parametrize("level, bits", [("weight", 8), ("device", None)])
def test_bit_identical_across_thread_counts(level, bits, monkeypatch):
    monkeypatch.setattr(xbar.forward, "_PARALLEL_MIN_MACS", 0)  # use the worker threads
    w = weights((150, 260))
    x = np.random.default_rng(2).standard_normal((70, 260)).astype(np.float32)
    c = cfg(0.5, level, bits=bits, stuck_min_rate=0.01, stuck_max_rate=0.01)
    out = []
    old = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            xb = TiledCrossbar(w, c)
            xb.program(9)
            out.append((xb.effective_weight(), xb.matmul(x)))
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_stuck_at_faults():
    w = weights((200, 200))
    for rates in ({"stuck_min_rate": 1.0}, {"stuck_max_rate": 1.0}):
        xb = TiledCrossbar(w, cfg(0.5, **rates))
        xb.program(0)
        np.testing.assert_allclose(xb.effective_weight(), 0.0, atol=1e-6)
    xb = TiledCrossbar(w, cfg(0.0, stuck_max_rate=0.05))
    xb.program(0)
    changed = np.mean(xb.effective_weight() != w)
    assert changed == pytest.approx(1 - 0.95**2, abs=0.01)  # either cell of the pair
    stuck = xb.effective_weight()[xb.effective_weight() != w]
    w_max = xb.weight_scale
    # a stuck G+ gives w_max (G- at g_min) or w_max - |w| (G- was programmed), and mirrored
    assert np.all(np.abs(stuck) <= w_max * (1 + 1e-6))


def test_read_noise_is_fresh_per_call_and_seeded():
    w = weights((30, 40))
    x = np.ones((2, 40), dtype=np.float32)
    xb = TiledCrossbar(w, cfg(0.0, read_noise=0.05))
    xb.program(1)
    y1, y2 = xb.matmul(x), xb.matmul(x)
    assert not np.array_equal(y1, y2)
    np.testing.assert_array_equal(xb.effective_weight(), w)
    np.testing.assert_array_equal(xb.matmul(x, rng=4), xb.matmul(x, rng=4))
    xb.program(1)
    np.testing.assert_array_equal(xb.matmul(x), y1)  # the noise stream follows the seed
    rel = (xb.matmul(x, rng=5) - x @ w.T) / np.abs(x @ w.T).max()
    assert 0 < np.abs(rel).max() < 0.1


@pytest.mark.parametrize("level,levels,p", [("weight", 0, 0.0), ("device", 16, 0.05)])
def test_serial_and_parallel_programming_give_the_same_cells(level, levels, p):
    # small arrays take the serial twin of the kernel (xbar.kernels.PARALLEL_MIN_CELLS)
    n = 5000
    rng = np.random.default_rng(1)
    w = rng.uniform(-1, 1, n).astype(np.float32)
    z = rng.standard_normal((2, n), dtype=np.float32)
    u = rng.random(2 * n, dtype=np.float32)
    outs = []
    for program in (xbar.kernels.program_cells, xbar.kernels.program_cells_serial):
        out = np.empty(n, np.float32)
        program(w, z[0], z[1] if level == "device" else z[1][:0], u if p else u[:0], 0.5,
                level == "device", 1.0, 1e-6, 1e-4, levels, p, p, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
