"""The fused digital correction of a crossbar conv (``mapping.correction``, issue 9).

* the conv kernels with a correction as post-op (pool, generator, ReLU, compensator, then
  ReLU / max-pool) against the plain oracle ``naive.mapping_conv_correction`` and against
  CorrectNet's torch blocks, within ``mapping.fusion.BN_RTOL``; the receptive average pool
  is torch's ``avg_pool2d`` bit for bit; samples sharing an input, both conv kernels and
  Numba's thread count change nothing;
* the protocol: ``CompensatedLayer.fused_correction()`` gives a ``ConvCorrection`` only
  where it can (None: torch path, same accuracies); a correction that disagrees with its
  module on the probe is not fused; the fused Monte-Carlo run of a compensated LeNet-5
  fuses both corrections and matches the reference engine;
* every documented error.
"""

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mapping
from correctnet.compensation.modules import (CompensatedLayer, compensation_parameters,
                                             insert_compensation, make_compensated_layer)
from correctnet.workloads.models import build_model
from mapping import (ArgumentTypeError, BackendError, ConvCorrection, CrossbarConv2d,
                     MappingError, convert_to_crossbar, correction_kernels, fusion, kernels,
                     run_monte_carlo)
from mapping.correction import correction_of
from mapping.fastpath import LayerStatics, PostOps, fused_forward, sample_weights
from naive import mapping_conv_correction, mapping_correction_float32
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

CFG8 = XbarConfig(tile=TileConfig(32, 16), device=DeviceConfig(sigma=0.5),
                  dac=DACConfig(bits=8), adc=ADCConfig(bits=8))


def _close(got, ref):
    """``fusion._agrees``'s tolerance, with a readable failure."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    bound = fusion.BN_RTOL * (np.abs(ref) + np.abs(ref).max())
    assert got.shape == ref.shape
    assert (np.abs(got - ref) <= bound).all(), float(np.abs(got - ref).max())


def _spec(layer, m, kernel, stride, padding, seed=0):
    rng = np.random.default_rng(seed)
    c, n = layer.in_channels, layer.out_channels
    return ConvCorrection(layer, kernel=kernel, stride=stride, padding=padding,
                          gen_weight=rng.standard_normal((m, c + n)) * 0.5,
                          gen_bias=rng.standard_normal(m) * 0.1,
                          comp_weight=rng.standard_normal((n, n + m)) * 0.5,
                          comp_bias=rng.standard_normal(n) * 0.1)


GEOMETRIES = [  # (in, out, kernel, stride, padding, m, input size)
    (1, 6, 5, 1, 2, 6, (12, 11)),          # LeNet conv1-like, odd width
    (6, 16, 5, 1, 0, 16, (9, 9)),          # LeNet conv2-like
    (3, 5, 3, 2, 1, 3, (9, 8)),            # stride 2: the row-by-row pool
    (2, 4, 1, 1, 0, 1, (5, 5)),            # 1x1: the pool is the identity
    (4, 7, 3, (1, 2), (1, 0), 9, (7, 10)),  # mixed stride and padding
]


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("post", ["none", "relu", "relu+pool"])
def test_kernel_correction_equals_the_oracle(geo, post):
    c, n, k, s, p, m, (h, w) = geo
    torch.manual_seed(1)
    layer = CrossbarConv2d.from_float(nn.Conv2d(c, n, k, stride=s, padding=p), CFG8)
    layer.program(3)
    st = LayerStatics(layer)
    wt = sample_weights(layer)[None]
    x = torch.randn(3, c, h, w)
    spec = _spec(layer, m, layer.kernel_size, layer.stride, layer.padding)
    y = fused_forward(st, layer, x, wt)[0]                     # the conv alone
    z = torch.from_numpy(mapping_conv_correction(
        x.numpy(), y.numpy(), spec.kernel, spec.stride, spec.padding, spec.gen_weight,
        spec.gen_bias, spec.comp_weight, spec.comp_bias)).float()
    relu = post != "none"
    pool = nn.MaxPool2d(2) if post == "relu+pool" and min(z.shape[2:]) >= 2 else None
    want = PostOps(relu, pool).apply_torch(z)
    got = fused_forward(st, layer, x, wt, post=PostOps(relu, pool, correction=spec))[0]
    _close(got, want)


@pytest.mark.parametrize("geo", [g for g in GEOMETRIES])
def test_receptive_pool_is_torch_avg_pool_bit_for_bit(geo):
    c, n, k, s, p, m, (h, w) = geo
    layer = CrossbarConv2d.from_float(nn.Conv2d(c, n, k, stride=s, padding=p), CFG8)
    spec = _spec(layer, m, layer.kernel_size, layer.stride, layer.padding)
    x = torch.randn(2, c, h, w)
    want = F.avg_pool2d(x, spec.kernel, spec.stride, spec.padding, count_include_pad=True)
    ho, wo = want.shape[2:]
    cg, _ = spec.kernel_arrays()
    wp = w + 2 * spec.padding[1]
    xn = np.ascontiguousarray(x.numpy())[None]
    for b in range(2):
        pooled = np.empty((c, ho * wo), np.float32)
        correction_kernels._window_means(xn, 0, b, cg, ho, wo, pooled,
                                         np.empty((h + 2 * spec.padding[0]) * wp, np.float32),
                                         np.empty(ho * wp, np.float32))
        np.testing.assert_array_equal(pooled.reshape(c, ho, wo), want[b].numpy())


@pytest.mark.parametrize("n,m", [(1, 1), (2, 3), (3, 5), (4, 4), (5, 2), (6, 6), (7, 9),
                                 (16, 16)])
def test_correction_sums_are_float32_in_ascending_channel_order(n, m):
    """correct_write against the float32 oracle bit for bit: every channel count (the
    kernel's blocks of two outputs and four channels, padded with a zero row at weight 0),
    special values included (NaN, inf, -0 in y and t)."""
    rng = np.random.default_rng(n * 10 + m)
    c, n_l = 3, 37
    wg = rng.standard_normal((m, c + n)).astype(np.float32)
    bg = rng.standard_normal(m).astype(np.float32)
    wc = rng.standard_normal((n, n + m)).astype(np.float32)
    bc = rng.standard_normal(n).astype(np.float32)
    wg[0, -1] = -0.0
    y = rng.standard_normal((n, n_l)).astype(np.float32)
    t = rng.standard_normal((m, n_l)).astype(np.float32)
    y[:, 0], t[:, 1], y[0, 2], y[-1, 3], t[0, 4] = -0.0, -0.0, np.nan, np.inf, np.nan
    cg = np.array([1, 1, 1, 1, 0, 0, m, n], np.int64)
    cw = np.concatenate([wg.ravel(), bg, wc.ravel(), bc])
    g, z = np.empty((m, n_l), np.float32), np.empty((n, n_l), np.float32)
    part = np.zeros((5, n_l + 3), np.float32)      # wider than L, as in the block kernel
    correction_kernels.correct_write(y, c, cg, cw, t, g, z, part)
    want = mapping_correction_float32(y, t, wg[:, c:], wc, bc)
    np.testing.assert_array_equal(z, want)                    # NaN where the oracle has one
    real = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(z[real]), np.signbit(want[real]))   # -0 too
    assert not part[4].any()                        # the zero row stays zero


def test_shared_input_samples_kernels_and_threads_change_nothing():
    torch.manual_seed(2)
    layer = CrossbarConv2d.from_float(nn.Conv2d(6, 36, 3, padding=1), CFG8)
    layer.program(4)
    st = LayerStatics(layer)
    w1 = sample_weights(layer)
    wt = np.ascontiguousarray(np.stack([w1, 0.8 * w1, 1.1 * w1]))
    spec = _spec(layer, 5, (3, 3), (1, 1), (1, 1))
    post = PostOps(True, nn.MaxPool2d(2), correction=spec)
    x = torch.relu(torch.randn(4, 6, 4, 4))
    xn = np.ascontiguousarray(x.numpy())[None]
    geom = np.array([3, 3, 1, 1, 1, 1, 4, 4, 1, 1], dtype=np.int64)
    args = (xn, wt, st.bounds, st.gain, st.step, st.bias, st.periph, geom, *post.kernel_args())
    outs = [np.empty((3, 4, 36, 2, 2), np.float32) for _ in range(2)]
    kernels.analog_conv_forward(*args, outs[0])          # channel-vectorised
    kernels.analog_conv_positions(*args, outs[1])        # position-vectorised
    np.testing.assert_array_equal(outs[0], outs[1])
    for smp in range(3):      # one sample at a time = the shared pass
        one = fused_forward(st, layer, x, np.ascontiguousarray(wt[smp:smp + 1]), post=post)
        np.testing.assert_array_equal(one.numpy()[0], outs[1][smp])
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = fused_forward(st, layer, x, wt, post=post).numpy()
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(single, outs[1])


def _compensated_conv(pool="receptive", **conv):
    torch.manual_seed(5)
    layer = make_compensated_layer(nn.Conv2d(3, 4, 3, **conv), 1.0, pool=pool)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for prm in compensation_parameters(nn.Sequential(layer)):
            prm.add_(0.3 * torch.randn(prm.shape, generator=g))
    return layer


def test_compensated_layer_protocol_gives_its_blocks_as_a_spec():
    layer = _compensated_conv(padding=1)
    assert layer.fused_correction() is None           # base not a crossbar layer yet
    analog = convert_to_crossbar(nn.Sequential(layer), CFG8)[0]
    spec = analog.fused_correction()
    assert isinstance(spec, ConvCorrection) and spec.base is analog.base
    assert (spec.kernel, spec.stride, spec.padding) == ((3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(spec.gen_weight,
                                  analog.generator.conv.weight.detach().flatten(1).numpy())
    np.testing.assert_array_equal(spec.comp_bias, analog.compensator.conv.bias.detach().numpy())
    mapping.program(analog, 0)
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        y = analog.base(x)
        want = analog(x)
    got = mapping_conv_correction(x.numpy(), y.numpy(), spec.kernel, spec.stride, spec.padding,
                                  spec.gen_weight, spec.gen_bias, spec.comp_weight,
                                  spec.comp_bias)
    _close(got, want)                                # the spec says what the module does
    assert correction_of(analog) is not None and correction_of(nn.ReLU()) is None


def test_protocol_says_none_where_the_kernel_cannot_run():
    adaptive = convert_to_crossbar(nn.Sequential(_compensated_conv("adaptive")), CFG8)[0]
    assert adaptive.fused_correction() is None
    dilated = convert_to_crossbar(nn.Sequential(_compensated_conv(dilation=2)), CFG8)[0]
    assert dilated.fused_correction() is None         # adaptive fallback
    lin = convert_to_crossbar(nn.Sequential(make_compensated_layer(nn.Linear(5, 3), 1.0)),
                              CFG8)[0]
    assert lin.fused_correction() is None             # Linear layers stay in torch
    hooked = convert_to_crossbar(nn.Sequential(_compensated_conv()), CFG8)[0]
    hooked.generator.conv.register_forward_hook(lambda *a: None)
    assert hooked.fused_correction() is None          # a hook would be skipped otherwise

    class Other(CompensatedLayer):
        def forward(self, x):
            return super().forward(x) * 2
    base = convert_to_crossbar(nn.Sequential(_compensated_conv()), CFG8)[0]
    other = Other(base.base, base.generator, base.compensator, 1.0)
    assert other.fused_correction() is None


def _lenet(pool="receptive"):
    torch.manual_seed(0)
    model = insert_compensation(build_model("lenet5").eval(),
                                {"features.conv1": 1.0, "features.conv2": 1.0}, pool=pool)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for prm in compensation_parameters(model):
            prm.add_(0.2 * torch.randn(prm.shape, generator=g))
    model.eval()
    gx = torch.Generator().manual_seed(2)
    x = torch.randn(80, 1, 28, 28, generator=gx)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, [(x[:40], y[:40]), (x[40:], y[40:])]


def _spy_installs(monkeypatch, what):
    """``what(model, bases)`` after each fused run installed its corrections, in a list."""
    runs = []
    real = fusion._install_corrections

    def spy(model, *args):
        bases = real(model, *args)
        runs.append(what(model, bases))
        return bases
    monkeypatch.setattr(fusion, "_install_corrections", spy)
    return runs


@pytest.fixture
def installed(monkeypatch):
    """The crossbar convs whose corrections each fused run installed."""
    return _spy_installs(monkeypatch, lambda model, bases: len(bases))


@pytest.mark.parametrize("cfg", ["ideal", "8-bit"])
def test_fused_compensated_lenet_fuses_both_corrections_and_matches_the_reference(
        cfg, installed):
    model, data = _lenet()
    config = CFG8 if cfg == "8-bit" else XbarConfig(tile=TileConfig(64, 32),
                                                    device=DeviceConfig(sigma=0.5),
                                                    dac=DACConfig(bits=None),
                                                    adc=ADCConfig(bits=None))
    analog = convert_to_crossbar(model, config)
    with torch.no_grad():
        mapping.program(analog, 0)
        before = analog(data[0][0])
    fast = run_monte_carlo(analog, data, samples=3, seed=7, progress=False)
    ref = run_monte_carlo(analog, data, samples=3, seed=7, progress=False, engine="reference")
    assert installed == [2] and fast.engine == "fused"
    assert 0.1 < ref.mean < 0.99
    np.testing.assert_array_equal(fast.accuracies, ref.accuracies)
    assert isinstance(analog.features.conv1, CompensatedLayer)      # put back
    assert type(analog.features.relu1) is nn.ReLU
    with torch.no_grad():                  # and the model as it was after the run
        mapping.program(analog, 0)
        assert torch.equal(analog(data[0][0]), before)


def test_spec_none_runs_the_compensators_in_torch(installed):
    model, data = _lenet(pool="adaptive")
    analog = convert_to_crossbar(model, CFG8)
    fast = run_monte_carlo(analog, data, samples=2, seed=3, progress=False)
    ref = run_monte_carlo(analog, data, samples=2, seed=3, progress=False, engine="reference")
    assert installed == [0]
    np.testing.assert_array_equal(fast.accuracies, ref.accuracies)


def test_a_correction_that_disagrees_on_the_probe_is_not_fused(installed, monkeypatch):
    model, data = _lenet()
    analog = convert_to_crossbar(model, CFG8)
    real = CompensatedLayer.fused_correction

    def wrong(self):          # a module that misdescribes itself: compensator bias off
        spec = real(self)
        spec.comp_bias = spec.comp_bias + 0.5
        return spec
    monkeypatch.setattr(CompensatedLayer, "fused_correction", wrong)
    fast = run_monte_carlo(analog, data, samples=2, seed=3, progress=False)
    ref = run_monte_carlo(analog, data, samples=2, seed=3, progress=False, engine="reference")
    assert installed == [0]
    np.testing.assert_array_equal(fast.accuracies, ref.accuracies)


def test_documented_errors():
    layer = CrossbarConv2d.from_float(nn.Conv2d(2, 3, 3), CFG8)
    ok = dict(kernel=3, stride=1, padding=1, gen_weight=np.ones((2, 5)), gen_bias=np.ones(2),
              comp_weight=np.ones((3, 5)), comp_bias=np.ones(3))
    ConvCorrection(layer, **ok)
    with pytest.raises(ArgumentTypeError, match="must be a CrossbarConv2d"):
        ConvCorrection(nn.Conv2d(2, 3, 3), **ok)
    with pytest.raises(MappingError, match="gen_weight must have shape"):
        ConvCorrection(layer, **{**ok, "gen_weight": np.ones((2, 4))})
    with pytest.raises(MappingError, match="comp_weight must have shape"):
        ConvCorrection(layer, **{**ok, "comp_weight": np.ones((3, 4))})
    with pytest.raises(MappingError, match="must have 1 dimension"):
        ConvCorrection(layer, **{**ok, "comp_bias": np.ones((3, 1))})
    with pytest.raises(MappingError, match="padding must lie in"):
        ConvCorrection(layer, **{**ok, "padding": 2})
    with pytest.raises(MappingError, match="kernel and stride must be >= 1"):
        ConvCorrection(layer, **{**ok, "stride": 0})
    with pytest.raises(MappingError, match="an int or a pair of ints"):
        ConvCorrection(layer, **{**ok, "kernel": (3, 3, 3)})

    class Liar(nn.Module):
        def fused_correction(self):
            return "not a spec"
    with pytest.raises(ArgumentTypeError, match="must return a ConvCorrection or None"):
        correction_of(Liar())
    # a correction whose pool does not give the conv's output size on this input
    padded = CrossbarConv2d.from_float(nn.Conv2d(2, 3, 3, padding=1), CFG8)
    padded.program(0)
    spec = ConvCorrection(padded, **{**ok, "padding": 0})       # conv keeps 5x5, pool 3x3
    with pytest.raises(BackendError, match="pool does not give this conv's output size"):
        fused_forward(LayerStatics(padded), padded, torch.randn(1, 2, 5, 5),
                      sample_weights(padded)[None], post=PostOps(correction=spec))


def _conv_bn_net():
    """conv-BN-ReLU-pool-linear with the conv compensated (VGG's layout), and its data."""
    torch.manual_seed(8)
    net = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    comp = insert_compensation(net.eval(), {"0": 1.0})
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for prm in compensation_parameters(comp):
            prm.add_(0.3 * torch.randn(prm.shape, generator=g))
    x = torch.randn(60, 2, 8, 8, generator=g)
    with torch.no_grad():
        y = comp.eval()(x).argmax(1)
    return convert_to_crossbar(comp, CFG8), [(x[:30], y[:30]), (x[30:], y[30:])]


@pytest.fixture
def layout(monkeypatch):
    """The module types of the (Sequential) model right after each run fused its corrections."""
    return _spy_installs(monkeypatch, lambda model, bases: [type(m).__name__ for m in model])


def test_a_batch_norm_after_a_correction_is_folded_with_the_relu_and_pool(layout):
    # the correction, the batch-norm, the ReLU and the max-pool all run in the conv kernel
    analog, data = _conv_bn_net()
    fast = run_monte_carlo(analog, data, samples=2, seed=4, progress=False)
    ref = run_monte_carlo(analog, data, samples=2, seed=4, progress=False, engine="reference")
    assert layout == [["CrossbarConv2d", "Identity", "Identity", "Identity", "Flatten",
                       "CrossbarLinear"]]
    np.testing.assert_array_equal(fast.accuracies, ref.accuracies)
    assert isinstance(analog[0], CompensatedLayer) and type(analog[1]) is nn.BatchNorm2d
    assert type(analog[2]) is nn.ReLU and type(analog[3]) is nn.MaxPool2d   # put back


def test_a_fold_that_disagrees_leaves_the_batch_norm_and_what_follows_in_torch(
        layout, monkeypatch):
    analog, data = _conv_bn_net()
    real = fusion.batchnorm_affine
    monkeypatch.setattr(fusion, "batchnorm_affine", lambda bn: real(bn) * 1.01)
    fast = run_monte_carlo(analog, data, samples=2, seed=4, progress=False)
    ref = run_monte_carlo(analog, data, samples=2, seed=4, progress=False, engine="reference")
    # the correction alone in the kernel; the ReLU / max-pool after the batch-norm in Numba
    assert layout == [["CrossbarConv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten",
                       "CrossbarLinear"]]
    np.testing.assert_array_equal(fast.accuracies, ref.accuracies)
