"""IR drop through mapping: every execution path applies it, or refuses with a clear error."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import mapping
from mapping import BackendError, CrossbarLinear, convert_to_crossbar, crossbar_layers
from mapping.fastpath import LayerStatics, fused_forward, sample_weights
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig


def cfg(r=20.0, adc=8, sigma=0.3):
    return XbarConfig(tile=TileConfig(16, 8, line_resistance=r),
                      device=DeviceConfig(sigma=sigma), dac=DACConfig(bits=8),
                      adc=ADCConfig(bits=adc))


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 7)).eval()


def _close(a, b, frac=0.99):
    diff = (a - b).abs()
    assert (diff <= 1e-4 * (1 + b.abs())).float().mean() >= frac, float(diff.max())


def _reference(analog, x):
    """Each layer as xbar.TiledCrossbar.matmul on its im2col matrix, plus bias."""
    conv, lin = [m for _, m in crossbar_layers(analog)]
    cols = torch.nn.functional.unfold(x, 3, padding=1)            # (B, C*9, L)
    b, k, n_pos = cols.shape
    y = conv.crossbar.matmul(cols.transpose(1, 2).reshape(-1, k).numpy())
    y = torch.from_numpy(y).reshape(b, n_pos, -1).transpose(1, 2).reshape(b, -1, 6, 6)
    h = torch.relu(y + conv.bias.detach()[None, :, None, None]).flatten(1)
    return torch.from_numpy(lin.crossbar.matmul(h.numpy())) + lin.bias.detach()


@pytest.mark.parametrize("mode", ["program", "ideal"])
def test_numba_and_torch_backends_apply_ir_drop(mode):
    model = net()
    analog = convert_to_crossbar(model, cfg())
    ideal_wires = convert_to_crossbar(model, dataclasses.replace(cfg(), tile=TileConfig(16, 8)))
    for a in (analog, ideal_wires):
        mapping.program(a, 5) if mode == "program" else mapping.program_ideal(a)
    x = torch.rand(3, 2, 6, 6)
    with torch.no_grad():
        ref = _reference(analog, x)
        y_numba = analog(x)
        mapping.set_backend(analog, "torch")
        y_torch = analog(x)
        y_no_ir = ideal_wires(x)
    _close(y_numba, ref)
    _close(y_torch, ref)
    assert (y_numba - y_no_ir).abs().max() > 1e-3                   # the drop did act


def test_fused_fast_path_applies_ir_drop():
    analog = convert_to_crossbar(net(), cfg())
    mapping.program(analog, 2)
    h = torch.rand(4, 2, 6, 6)
    for _, layer in crossbar_layers(analog):
        if isinstance(layer, CrossbarLinear):
            h = h.flatten(1)
        with torch.no_grad():
            ref = layer(h)
            fast = fused_forward(LayerStatics(layer), layer, h, sample_weights(layer)[None])
        _close(fast[0], ref)
        h = torch.relu(ref)
    assert not np.array_equal(sample_weights(layer), layer.crossbar.effective_weight().T)


def test_monte_carlo_fast_path_equals_programming_loop_under_ir_drop():
    model = net()
    torch.manual_seed(3)
    x = torch.rand(40, 2, 6, 6)
    with torch.no_grad():
        labels = model(x).argmax(1)
    data = [(x[:20], labels[:20]), (x[20:], labels[20:])]
    analog = convert_to_crossbar(model, cfg(r=60.0, sigma=0.6))
    res = mapping.run_monte_carlo(analog, data, samples=3, seed=1, progress=False)
    slow = []
    for seq in np.random.SeedSequence(1).spawn(3):
        mapping.program(analog, np.random.default_rng(seq))
        slow.append(mapping.evaluate_accuracy(analog, data))
    np.testing.assert_allclose(res.accuracies, slow, atol=0.051)   # rare 1-LSB ADC flips


def test_torch_backend_refuses_ir_drop_on_resample_draws():
    analog = convert_to_crossbar(net(), cfg())
    mapping.set_backend(analog, "torch")
    mapping.resample(analog)
    with pytest.raises(BackendError, match="line_resistance"):
        analog(torch.rand(1, 2, 6, 6))
