"""numba vs torch backends, the Monte-Carlo fused kernels, resample() and its gradients."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import mapping
from mapping import (
    BackendError,
    CrossbarLinear,
    NotProgrammedError,
    convert_to_crossbar,
    crossbar_layers,
)
from mapping import converter_kernels
from mapping.fastpath import LayerStatics, fused_forward, sample_weights
from naive import adc_tile_sum, xbar_dac, xbar_matmul
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig


def cfg(level="weight", dac=8, adc=8, levels=None, sigma=0.5):
    return XbarConfig(tile=TileConfig(16, 8), device=DeviceConfig(sigma=sigma, level=level,
                                                                   levels=levels),
                      dac=DACConfig(bits=dac), adc=ADCConfig(bits=adc))


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 20, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(20 * 3 * 3, 33), nn.ReLU(),
                         nn.Linear(33, 4)).eval()


def _assert_close_lsb(a, b, frac=0.995):
    """Equal to float rounding, except rare ADC/DAC codes one step apart (sum order)."""
    diff = (a - b).abs()
    tol = 1e-4 * (1 + b.abs())
    assert (diff <= tol).float().mean() >= frac, float(diff.max())


@pytest.mark.parametrize("kw", [dict(), dict(level="device"), dict(levels=16, adc=6),
                                dict(dac=None, adc=5), dict(dac=6, adc=None)])
def test_numba_and_torch_backends_agree_on_programmed_cells(kw):
    net = small_net()
    analog = convert_to_crossbar(net, cfg(**kw))
    mapping.program(analog, 7)
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        y_numba = analog(x)
        mapping.set_backend(analog, "torch")
        y_torch = analog(x)
    _assert_close_lsb(y_torch, y_numba)
    assert not torch.allclose(y_numba, net(x), atol=1e-3)       # variation did act


def test_torch_backend_matches_naive_crossbar_oracle():
    torch.manual_seed(1)
    lin = nn.Linear(37, 11)
    c = cfg(adc=6)
    layer = CrossbarLinear.from_float(lin, c)
    layer.program(np.random.default_rng(2))
    layer.backend = "torch"
    x = torch.randn(9, 37)
    w_eff = layer.crossbar.effective_weight()
    w_t = dataclasses.replace(c, device=DeviceConfig(sigma=0.0))
    target = CrossbarLinear.from_float(lin, w_t).crossbar.effective_weight()
    ref = xbar_matmul(x.numpy(), w_eff, target, 16, 8, 6) + lin.bias.detach().numpy()
    with torch.no_grad():
        _assert_close_lsb(layer(x), torch.from_numpy(ref))


@pytest.mark.parametrize("dac, adc, input_range", [(8, 6, None), (6, None, 1.5),
                                                    (None, 5, None), (None, None, None)])
def test_linear_dac_and_adc_rows_equal_the_oracles(dac, adc, input_range):
    # the fused linear layers' converters, parallel over blocks of vectors (200 rows: three
    # full blocks and a short one), bit for bit against the DAC and ADC written as loops
    rng = np.random.default_rng(5)
    c = dataclasses.replace(cfg(dac=dac, adc=adc),
                            dac=DACConfig(bits=dac, input_range=input_range))
    st = LayerStatics(CrossbarLinear.from_float(nn.Linear(37, 11), c))
    x = rng.standard_normal((200, 37)).astype(np.float32)
    x[3] = 0.0
    codes, scales = np.empty_like(x), np.empty(200)
    converter_kernels.dac_rows(x, st.periph, codes, scales)
    if st.dac_mode:
        want, s_want = xbar_dac(x, dac, input_range)
        np.testing.assert_array_equal(codes, want.astype(np.float32))
        np.testing.assert_array_equal(scales, s_want)
    else:
        np.testing.assert_array_equal(codes, x)
        np.testing.assert_array_equal(scales, 1.0)
    p = (rng.standard_normal((len(st.bounds) - 1, 200, 11)) * 40).astype(np.float32)
    out = np.empty((200, 11), np.float32)
    converter_kernels.adc_rows(p, st.gain, st.step, st.q_adc, scales, st.bias, out)
    np.testing.assert_array_equal(out, adc_tile_sum(p, st.gain, st.step, st.q_adc, scales,
                                                    st.bias))


def wide_net():
    torch.manual_seed(2)     # many channels, few positions: the channel-vectorised kernel
    return nn.Sequential(nn.Conv2d(3, 40, 3, stride=2), nn.ReLU(), nn.Conv2d(40, 36, 2),
                         nn.Flatten(), nn.Linear(36 * 2 * 2, 5)).eval()


@pytest.mark.parametrize("build", [small_net, wide_net])
@pytest.mark.parametrize("kw", [dict(), dict(dac=None, adc=None), dict(dac=None, adc=4)])
def test_fused_kernels_match_layer_path(kw, build):
    analog = convert_to_crossbar(build(), cfg(**kw))
    mapping.program(analog, 3)
    h = torch.randn(4, 3, 8, 8)
    for _, layer in crossbar_layers(analog):
        if isinstance(layer, CrossbarLinear):
            h = h.flatten(1)
        with torch.no_grad():
            ref = layer(h)
            st = LayerStatics(layer)
            w = sample_weights(layer)
            fast = fused_forward(st, layer, h, np.stack([w, w]))
        _assert_close_lsb(fast[0], ref)
        _assert_close_lsb(fast[1], ref)
        h = torch.relu(ref)


def test_resample_weight_level_statistics_and_gradients():
    lin = nn.Linear(200, 100)
    layer = CrossbarLinear.from_float(lin, cfg(dac=None, adc=None))
    layer.backend = "torch"
    layer.weight.requires_grad_(False)                 # frozen base weights
    head = nn.Linear(100, 3)                           # digital, downstream
    g = torch.Generator().manual_seed(0)
    mapping.resample(layer, g)
    w_eff, _ = layer.torch_weight()
    log_ratio = torch.log(w_eff / layer.weight)
    assert abs(float(log_ratio.std()) - 0.5) < 0.01 and abs(float(log_ratio.mean())) < 0.01
    x = torch.randn(5, 200, requires_grad=True)
    head(torch.relu(layer(x))).sum().backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    # same generator seed -> same draw; a new draw differs
    y1 = layer(x).detach()
    mapping.resample(layer, torch.Generator().manual_seed(0))
    torch.testing.assert_close(layer(x).detach(), y1)
    mapping.resample(layer, torch.Generator().manual_seed(1))
    assert not torch.allclose(layer(x).detach(), y1)


def test_resample_device_level_and_ste_gradient_to_weights():
    lin = nn.Linear(64, 32)
    c = dataclasses.replace(cfg(level="device"), device=DeviceConfig(
        sigma=0.5, level="device", g_min=0.0, g_max=1e-4))
    layer = CrossbarLinear.from_float(lin, c)
    layer.backend = "torch"
    mapping.resample(layer, torch.Generator().manual_seed(0))
    w_eff, fs = layer.torch_weight()
    ratio = torch.log(w_eff / layer.weight).detach()   # g_min = 0: one active cell per weight
    assert abs(float(ratio.std()) - 0.5) < 0.03
    assert fs.shape == (4, 32)
    layer(torch.randn(3, 64)).sum().backward()         # DAC/ADC rounding: straight-through
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_resample_layer_selection_and_numba_refuses_torch_draw():
    analog = convert_to_crossbar(small_net(), cfg(dac=None, adc=None))
    net = small_net()
    x = torch.randn(2, 3, 8, 8)
    mapping.set_backend(analog, "torch")
    mapping.resample(analog, layers=[])                # nothing varied: exact
    with torch.no_grad():
        torch.testing.assert_close(analog(x), net(x), atol=1e-4, rtol=1e-4)
    mapping.resample(analog, layers=range(1, 4))
    first = crossbar_layers(analog)[0][1]
    assert first._noise is None
    mapping.set_backend(analog, "numba")
    with pytest.raises(NotProgrammedError, match="resample"):
        analog(x)
    mapping.program(analog, 0, layers=[])
    with torch.no_grad():
        torch.testing.assert_close(analog(x), net(x), atol=1e-4, rtol=1e-4)


def test_backend_errors():
    analog = convert_to_crossbar(small_net(), cfg())
    with pytest.raises(BackendError, match="'cuda'"):
        mapping.set_backend(analog, "cuda")
    with pytest.raises(ValueError):
        crossbar_layers(analog)[0][1].backend = "numpy"
    with pytest.raises(mapping.ArgumentTypeError, match="torch.Generator"):
        mapping.resample(analog, generator=3)
    layer = crossbar_layers(analog)[0][1]
    with torch.no_grad():
        layer.weight.mul_(2)                           # weights changed after programming
    with pytest.raises(NotProgrammedError, match="program"):
        layer(torch.randn(1, 3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_backend_on_cuda_matches_cpu():
    analog = convert_to_crossbar(small_net(), cfg())
    mapping.program(analog, 5)
    x = torch.randn(3, 3, 8, 8)
    mapping.set_backend(analog, "torch")
    with torch.no_grad():
        ref = analog(x)
        gpu = analog.cuda()
        assert crossbar_layers(gpu)[0][1].backend == "torch"
        _assert_close_lsb(gpu(x.cuda()).cpu(), ref)
        mapping.resample(gpu, torch.Generator(device="cuda").manual_seed(0))
        assert gpu(x.cuda()).is_cuda


def test_torch_backend_ideal_follows_weight_updates():
    lin = nn.Linear(12, 4)
    layer = CrossbarLinear.from_float(lin, XbarConfig.ideal())
    layer.backend = "torch"
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.randn(3, 12)
    layer(x).pow(2).sum().backward()
    opt.step()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ layer.weight.t() + layer.bias)


def test_device_round_trip_keeps_programmed_crossbar():
    analog = convert_to_crossbar(small_net(), cfg())
    mapping.program(analog, 1)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = analog(x)
        layer = crossbar_layers(analog)[0][1]
        layer.weight.data = layer.weight.data.clone()     # new storage, same values (as .to())
        torch.testing.assert_close(analog(x), ref, rtol=0, atol=0)
