"""Property tests (hypothesis): any input is accepted with a valid result, or refused with
the documented error type -- never a traceback from deeper down, never a NaN result.

``max_examples`` is kept small so the file runs in a few seconds.
"""

import argparse
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xbar
from correctnet.commands.argtypes import (FLOAT32_MAX, nonneg_float, nonneg_int,
                                          positive_float, positive_int, torch_device)
from correctnet.commands.compensate import resolve_plan
from correctnet.commands.simulate import parse_bits
from correctnet.commands.sweep import MAX_SIGMAS, parse_sigmas, parse_tiles
from correctnet.compensation.modules import PlanError
from correctnet.errors import UsageError

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

#: Text that looks like numbers, ranges, lists and plans, plus arbitrary text.
_pieces = st.sampled_from(["0", "1", "-1", "0.5", "1e9", "1e300", "-0", "nan", "inf", "-inf",
                           "1e-308", "2", "24", "25", "none", "x", "", " ", ":", ",", "=",
                           "conv2", "fc3", "cuda", "cpu", ":0", "3.4e38", "3.5e38"])
TEXT = st.one_of(st.text(max_size=12), st.lists(_pieces, max_size=7).map("".join))


@FAST
@given(TEXT)
def test_number_types_accept_valid_values_or_raise_argument_type_error(text):
    for parse, low, strict, kind in ((positive_int, 1, False, int), (nonneg_int, 0, False, int),
                                     (nonneg_float, 0.0, False, float),
                                     (positive_float, 0.0, True, float)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as exc:
            assert repr(text) in str(exc)
            continue
        assert isinstance(value, kind) and math.isfinite(value)
        assert value > low if strict else value >= low
        if kind is float:
            assert value <= FLOAT32_MAX


@FAST
@given(TEXT)
def test_bits_and_device_types(text):
    try:
        bits = parse_bits(text)
    except argparse.ArgumentTypeError as exc:
        assert "2..24" in str(exc)
    else:
        assert bits is None or (isinstance(bits, int) and 2 <= bits <= 24)
        if bits is not None:            # what the parser accepts, the config accepts
            xbar.ADCConfig(bits=bits)
    try:
        device = torch_device(text)
    except argparse.ArgumentTypeError:
        pass
    else:
        assert device == "cpu" or device.startswith("cuda")


@pytest.mark.parametrize("text", ["cpu:", "CPU:", "cuda:", "cpu:0", "cuda:x", "gpu"])
def test_device_type_refuses_a_malformed_device(text):
    """Found by the property test above: "cpu:" was accepted and returned as "cpu:"."""
    with pytest.raises(argparse.ArgumentTypeError, match="expected cpu, cuda or cuda:N"):
        torch_device(text)


@FAST
@given(TEXT)
def test_sigma_and_tile_lists(text):
    try:
        sigmas = parse_sigmas(text)
    except UsageError as exc:
        assert "--sigma" in str(exc)
    else:
        assert 1 <= len(sigmas) <= MAX_SIGMAS and sigmas == sorted(set(sigmas))
        assert all(math.isfinite(s) and s >= 0 for s in sigmas)
    try:
        tiles = parse_tiles(text)
    except UsageError as exc:
        assert "--tile" in str(exc)
    else:
        assert tiles and all(isinstance(t, int) and t >= 1 for t in tiles)


LAYERS = ["features.conv1", "features.conv2", "classifier.fc1", "classifier.fc3"]


@FAST
@given(TEXT)
def test_plan_parser(text):
    try:
        plan = resolve_plan(text, LAYERS)
    except PlanError as exc:
        assert "--plan" in str(exc)
    else:
        assert plan and set(plan) <= set(LAYERS)
        assert all(math.isfinite(r) and r > 0 for r in plan.values())


_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, 1.0, -1.0, 1e-45, 3e38, 3.5e38, 1e300, -1e300]))
_dtypes = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8])


def _cast(a: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dtype)          # float16/int casts may overflow: that is the point


def _as(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` as ``dtype``; integer dtypes get clipped finite values first."""
    if np.dtype(dtype).kind != "f":
        a = np.nan_to_num(np.clip(a, -100, 100))
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dtype)          # a float16 cast may overflow to inf: that is the point


def _matrix(max_side=5, ndims=(1, 2, 3)):
    """Arrays of 1-3 dims (zero-size axes included) of any of :data:`_dtypes`."""
    shapes = st.sampled_from(ndims).flatmap(
        lambda n: hnp.array_shapes(min_dims=n, max_dims=n, min_side=0, max_side=max_side))
    values = shapes.flatmap(lambda shape: hnp.arrays(np.float64, shape, elements=_floats))
    return st.tuples(values, _dtypes).map(lambda t: _as(*t))


_configs = st.sampled_from([xbar.XbarConfig.ideal(), xbar.XbarConfig(),
                            xbar.XbarConfig(tile=xbar.TileConfig(n_rows=2, n_cols=2))])


def _inputs_for(weight: np.ndarray):
    """Mostly inputs that fit ``weight`` ((batch, in) or (in,)), sometimes any array."""
    n_in = weight.shape[1] if weight.ndim == 2 else 1
    fitting = st.tuples(st.sampled_from([(n_in,), (1, n_in), (3, n_in)]), _dtypes).flatmap(
        lambda t: hnp.arrays(np.float64, t[0], elements=_floats).map(lambda a: _as(a, t[1])))
    return st.one_of(fitting, fitting, fitting, _matrix(max_side=6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weight=_matrix(ndims=(2, 2, 2, 1, 3)), config=_configs,
       seed=st.integers(min_value=-2, max_value=5), data=st.data())
def test_tiled_crossbar_accepts_with_finite_results_or_refuses(weight, config, seed, data):
    documented = (xbar.InputError, xbar.ShapeError)
    try:
        xb = xbar.TiledCrossbar(weight, config)
    except documented:
        return
    try:
        xb.program(seed)
    except xbar.InputError:
        assert seed < 0
        xb.program_ideal()
    x = data.draw(_inputs_for(weight), label="x")
    try:
        y = xb.matmul(x)
    except documented:
        return
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert y.shape == ((weight.shape[0],) if x.ndim == 1 else (x.shape[0], weight.shape[0]))
