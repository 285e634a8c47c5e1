import numpy as np
import pytest

import xbar
import xbar.crossbar
import xbar.forward
import naive
from xbar import (ADCConfig, ConfigError, DACConfig, DeviceConfig, InputError,
                  NotProgrammedError, ShapeError, TileConfig, TiledCrossbar, XbarConfig)


def ideal(n_rows=128, n_cols=128):
    return XbarConfig.ideal(n_rows, n_cols)


def periph(n_rows, dac_bits=8, adc_bits=8, full_scale=1.0, input_range=None, **dev):
    return XbarConfig(tile=TileConfig(n_rows, n_rows), device=DeviceConfig(sigma=0.0, **dev),
                      dac=DACConfig(bits=dac_bits, input_range=input_range),
                      adc=ADCConfig(bits=adc_bits, full_scale=full_scale))


def assert_close(y, ref):
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(np.abs(ref).max(), 1e-30))


@pytest.mark.parametrize("out_in, batch, tile", [
    ((1, 1), 3, 128), ((256, 256), 4, 128), ((128, 256), 5, 64), ((127, 129), 7, 128),
    ((300, 20), 6, 128), ((20, 300), 6, 128), ((40, 50), 1, 16), ((127, 129), 1, 7),
])
def test_ideal_equals_x_wt(out_in, batch, tile):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(out_in).astype(np.float32)
    x = rng.standard_normal((batch, out_in[1])).astype(np.float32)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    xb = TiledCrossbar(w, ideal(tile, tile))
    xb.program_ideal()
    y = xb.matmul(x)
    assert y.dtype == np.float32 and y.shape == (batch, out_in[0])
    assert_close(y, ref)
    xb.program(123)  # sigma 0: a device sample is the target too
    assert_close(xb.matmul(x), ref)
    np.testing.assert_array_equal(xb.effective_weight(), w)


def test_one_dimensional_input():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 9))
    x = rng.standard_normal(9)
    xb = TiledCrossbar(w, ideal(4, 4))
    xb.program_ideal()
    assert xb.matmul(x).shape == (5,)
    assert_close(xb.matmul(x), w @ x)


@pytest.mark.parametrize("dac_bits", [None, 8])
def test_tile_size_does_not_matter_without_adc(dac_bits):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((70, 150)).astype(np.float32)
    x = rng.standard_normal((9, 150)).astype(np.float32)
    ys = []
    for tile in (7, 32, 150, 256):
        xb = TiledCrossbar(w, periph(tile, dac_bits=dac_bits, adc_bits=None))
        xb.program_ideal()
        ys.append(xb.matmul(x))
    for y in ys[1:]:
        assert_close(y, ys[0])
    ref = naive.xbar_matmul(x, w, w, 32, dac_bits, None)
    assert_close(ys[0], ref)


def dyadic_problem(n_out, n_in, batch, seed):
    """Weights k/16 with max |w| = 1 and exact inputs: every product and sum is exact."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-16, 17, size=(n_out, n_in)).astype(np.float32) / 16
    w[0, 0] = 1.0
    x = rng.integers(-127, 128, size=(batch, n_in)).astype(np.float32) / 8
    x[:, 0] = 127 / 8  # row max 127/8: DAC codes are the integers x * 8
    x[1] = 0.0       # an all-zero vector stays zero
    return w, x


@pytest.mark.parametrize("shape, tile, adc_bits, full_scale", [
    ((60, 100), 32, 8, 1.0), ((33, 257), 64, 4, 0.25), ((300, 130), 128, 6, 0.5),
    ((17, 45), 7, 3, 1.0), ((8, 8), 8, 8, 1.0),
])
@pytest.mark.parametrize("parallel", [False, True])
def test_adc_matches_oracle_exactly_on_dyadic_grid(shape, tile, adc_bits, full_scale, parallel,
                                                   monkeypatch):
    if parallel:
        monkeypatch.setattr(xbar.forward, "_PARALLEL_MIN_MACS", 0)
    w, x = dyadic_problem(*shape, batch=300, seed=sum(shape))
    cfg = periph(tile, dac_bits=8, adc_bits=adc_bits, full_scale=full_scale, g_min=0.0)
    xb = TiledCrossbar(w, cfg)
    xb.program_ideal()
    ref = naive.xbar_matmul(x, w, w, tile, 8, adc_bits, full_scale)
    np.testing.assert_array_equal(xb.matmul(x), ref)
    assert not np.any(xb.matmul(x)[1])


@pytest.mark.parametrize("dac_bits, input_range", [(8, None), (None, None), (6, 1.5)])
def test_adc_matches_oracle_on_random_data(dac_bits, input_range):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((90, 200)).astype(np.float32)
    x = rng.standard_normal((40, 200)).astype(np.float32)
    xb = TiledCrossbar(w, periph(64, dac_bits, 6, 0.5, input_range))
    xb.program_ideal()
    y = xb.matmul(x)
    ref = naive.xbar_matmul(x, w, w, 64, dac_bits, 6, 0.5, input_range)
    # Rounding ties may flip one ADC code: at most one step (F / qa) * s per row tile.
    u, s = naive.xbar_dac(x, dac_bits, input_range)
    one_step = (xb.adc_full_scale().max() / 31) * s[:, None]
    assert np.all(np.abs(y - ref) <= one_step * 1.001 + 1e-5)
    assert np.mean(y == ref) > 0.95


def test_dac_input_range_clips():
    w = np.eye(3, dtype=np.float32)
    xb = TiledCrossbar(w, periph(8, dac_bits=8, adc_bits=None, input_range=1.0))
    xb.program_ideal()
    y = xb.matmul(np.array([[2.0, -5.0, 0.5]]))
    np.testing.assert_allclose(y, [[1.0, -1.0, np.rint(63.5) / 127]], rtol=1e-6)


def test_adc_clips_with_small_full_scale():
    w = np.ones((1, 4), dtype=np.float32)
    xb = TiledCrossbar(w, periph(4, dac_bits=None, adc_bits=8, full_scale=0.5))
    xb.program_ideal()
    assert xb.matmul(np.ones((1, 4)))[0, 0] == pytest.approx(2.0)   # F = 0.5 * 4


def test_levels_quantise_targets():
    w = np.array([[1.0, 0.3, -0.6, 0.1]], dtype=np.float32)
    xb = TiledCrossbar(w, periph(4, None, None, levels=3))
    xb.program_ideal()
    np.testing.assert_array_equal(xb.effective_weight(), [[1.0, 0.5, -0.5, 0.0]])
    np.testing.assert_array_equal(xb.target_weight(), [[1.0, 0.5, -0.5, 0.0]])
    np.testing.assert_allclose(xb.adc_full_scale(), [[2.0]])


def test_geometry_and_full_scale():
    w = np.random.default_rng(5).standard_normal((130, 300))
    xb = TiledCrossbar(w, XbarConfig(tile=TileConfig(128, 64), adc=ADCConfig(full_scale=0.5)))
    assert xb.row_splits == tuple(naive.xbar_splits(300, 128)) == (0, 100, 200, 300)
    assert xb.col_splits == tuple(naive.xbar_splits(130, 64)) == (0, 44, 87, 130)
    assert xb.tile_grid == (3, 3) and xb.n_tiles == 9
    assert xb.n_cells == 2 * 9 * 128 * 64
    assert xb.utilisation == pytest.approx(130 * 300 / (9 * 128 * 64))
    assert xb.weight_scale == pytest.approx(np.abs(w).max(), rel=1e-6)
    assert xb.shape == (130, 300) and not xb.is_programmed
    f = xb.adc_full_scale()
    assert f.shape == (3, 130)
    w32 = w.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(f[1], 0.5 * np.abs(w32[:, 100:200]).sum(axis=1), rtol=1e-12)
    assert xbar.balanced_splits(5, 10) == (0, 5)


def test_zero_weight_layer():
    xb = TiledCrossbar(np.zeros((3, 4)), XbarConfig(device=DeviceConfig(level="device")))
    xb.program(0)
    assert xb.weight_scale == 1.0
    assert not np.any(xb.matmul(np.ones((2, 4))))


def test_warmup_returns_seconds():
    assert xbar.warmup() >= 0.0


def test_errors():
    w = np.ones((3, 4))
    xb = TiledCrossbar(w, ideal())
    with pytest.raises(NotProgrammedError, match="program"):
        xb.matmul(np.ones((1, 4)))
    with pytest.raises(NotProgrammedError):
        xb.effective_weight()
    xb.program_ideal()
    with pytest.raises(ShapeError, match=r"\(batch >= 1, 4\)"):
        xb.matmul(np.ones((2, 5)))
    with pytest.raises(ShapeError):
        xb.matmul(np.ones((2, 4, 1)))
    with pytest.raises(ShapeError):
        xb.matmul(np.ones((0, 4)))
    with pytest.raises(InputError, match="NaN/inf"):
        xb.matmul(np.array([[1.0, np.inf, 0, 0]]))
    with pytest.raises(InputError, match="real"):
        xb.matmul(np.array([["a"] * 4]))
    with pytest.raises(ShapeError, match="2-D"):
        TiledCrossbar(np.ones(4), ideal())
    with pytest.raises(ShapeError):
        TiledCrossbar(np.ones((0, 4)), ideal())
    with pytest.raises(InputError, match="weight holds 1 NaN"):
        TiledCrossbar(np.array([[1.0, np.nan]]), ideal())
    with pytest.raises(ConfigError, match="XbarConfig"):
        TiledCrossbar(w, {"tile": {}})
    with pytest.raises(InputError, match="Generator or an int"):
        xb.program("seed")
    with pytest.raises(InputError, match=">= 0"):
        xb.program(-1)
    with pytest.raises(ValueError):  # every xbar error is also a built-in
        xb.matmul(np.ones((2, 5)))


def test_blas_thread_count_restored_after_adc_matmul():
    from xbar import _blas

    w = np.random.default_rng(6).standard_normal((64, 300)).astype(np.float32)
    xb = TiledCrossbar(w, periph(64, 8, 8))
    xb.program_ideal()
    assert _blas.available()            # numpy's OpenBLAS, found by threadpoolctl
    before = _blas.num_threads()
    y = xb.matmul(np.ones((50, 300), dtype=np.float32))
    assert y.shape == (50, 64)
    assert _blas.num_threads() == before
    with _blas.blas_single_threaded() as single:
        assert single and _blas.num_threads() == 1
        with _blas.blas_single_threaded():
            assert _blas.num_threads() == 1
        assert _blas.num_threads() == 1
    assert _blas.num_threads() == before
