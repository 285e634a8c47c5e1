"""Execution strategies (mapping.execution) cross-checked against the reference path.

Networks: LeNet-5, LeNet-5 with conv1 and conv2 compensated, and a small batch-norm VGG-like
network (VGG16's block structure conv-BN-ReLU(-pool) at 1/8 width, fewer blocks, 16x16
inputs, to stay fast). Configs: ideal converters, 8-bit DAC/ADC, both at sigma 0.5.
"""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import mapping
from correctnet.compensation.modules import compensation_parameters, insert_compensation
from correctnet.workloads.models import build_model
from mapping import (BackendError, FusedExecution, IdealConverterExecution, ReferenceExecution,
                     TorchExecution, convert_to_crossbar, crossbar_layers, executions,
                     run_monte_carlo, set_execution)
from mapping.fastpath import PostOps
from mapping.fusion import NumbaPostOps
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

CONFIGS = {
    "ideal": XbarConfig(tile=TileConfig(64, 32), device=DeviceConfig(sigma=0.5),
                        dac=DACConfig(bits=None), adc=ADCConfig(bits=None)),
    "8-bit": XbarConfig(tile=TileConfig(64, 32), device=DeviceConfig(sigma=0.5),
                        dac=DACConfig(bits=8), adc=ADCConfig(bits=8)),
}


def bn_vgg(width=8):
    """conv-BN-ReLU blocks with max-pools as in VGG16 (channels 64/8, 128/8, 256/8), BN
    statistics moved away from identity."""
    c1, c2, c3 = 64 // width, 128 // width, 256 // width
    layers, cin = [], 1
    for i, (c, pool) in enumerate([(c1, False), (c1, True), (c2, True), (c3, True)]):
        layers += [(f"conv{i}", nn.Conv2d(cin, c, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(c)),
                   (f"relu{i}", nn.ReLU())]
        if pool:
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
        cin = c
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(layers + [("flat", nn.Flatten()),
                                              ("fc", nn.Linear(c3 * 4, 10))]))
    g = torch.Generator().manual_seed(5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return net.eval()


def lenet():
    torch.manual_seed(0)
    return build_model("lenet5").eval()


def compensated_lenet():
    model = insert_compensation(lenet(), {"features.conv1": 1.0, "features.conv2": 1.0})
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in compensation_parameters(model):
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


NETS = {"lenet5": (lenet, 28), "lenet5-compensated": (compensated_lenet, 28),
        "bn-vgg/8": (bn_vgg, 16)}


def teacher_data(model, side, n=48, batch=24):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 1, side, side, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def test_set_execution_installs_the_strategy_asked_for():
    analog = convert_to_crossbar(lenet(), CONFIGS["ideal"])
    assert set(executions(analog).values()) == {"reference"}          # automatic on CPU
    for name, cls in (("fused", FusedExecution), ("torch", TorchExecution),
                      ("ideal", IdealConverterExecution), ("reference", ReferenceExecution),
                      ("numba", ReferenceExecution)):
        set_execution(analog, name)
        layers = [layer for _, layer in crossbar_layers(analog)]
        assert all(type(layer.execution) is cls for layer in layers), name
    fused = [layer.execution for _, layer in crossbar_layers(set_execution(analog, "fused"))]
    assert len({id(e) for e in fused}) == len(fused)                 # one per layer
    mapping.set_backend(analog, "torch")
    assert set(executions(analog).values()) == {"torch"}
    with pytest.raises(BackendError, match="execution must be one of"):
        set_execution(analog, "cuda")
    assert set(executions(analog).values()) == {"torch"}             # unchanged on error


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("net", sorted(NETS))
def test_every_strategy_matches_the_reference_on_the_same_cells(net, cfg):
    build, side = NETS[net]
    model = build()
    analog = convert_to_crossbar(model, CONFIGS[cfg])
    mapping.program(analog, 3)
    x = teacher_data(model, side, n=8, batch=8)[0][0]
    outs = {}
    with torch.no_grad():
        for name in ("reference", "fused", "torch", "ideal"):
            outs[name] = set_execution(analog, name)(x)
    ref = outs["reference"]
    # an 8-bit ADC step propagated to the logits is far below 1e-2 of their range; float32
    # summation order alone gives ~1e-5
    tol = 2e-2 if cfg == "8-bit" else 1e-4
    scale = float(ref.abs().max())
    for name, out in outs.items():
        assert torch.isfinite(out).all()
        assert float((out - ref).abs().max()) <= tol * scale, name
    np.testing.assert_array_equal(outs["fused"].argmax(1), ref.argmax(1))


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("net", sorted(NETS))
def test_fused_monte_carlo_equals_the_reference_engine(net, cfg):
    build, side = NETS[net]
    model = build()
    data = teacher_data(model, side)
    analog = convert_to_crossbar(model, CONFIGS[cfg])
    set_execution(analog, "reference")        # the reference engine evaluates the model as is
    fast = run_monte_carlo(analog, data, samples=2, seed=11, progress=False, engine="fused")
    ref = run_monte_carlo(analog, data, samples=2, seed=11, progress=False, engine="reference")
    assert fast.fused_layers == [n for n, _ in crossbar_layers(analog)]
    if cfg == "ideal":
        np.testing.assert_array_equal(fast.accuracies, ref.accuracies)
    else:   # float32 bit-line sums in another order: a rare one-step ADC flip may move an image
        assert np.abs(fast.accuracies - ref.accuracies).max() <= 1 / fast.n_images + 1e-12
    again = run_monte_carlo(analog, data, samples=2, seed=11, progress=False, engine="fused")
    np.testing.assert_array_equal(again.accuracies, fast.accuracies)
    assert set(executions(analog).values()) == {"reference"}      # restored after the run


def test_numba_post_ops_equal_torch_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 10, generator=g)
    x[0, 1, 2, 3] = float("nan")
    for relu, pool in [(True, None), (False, nn.MaxPool2d(2)), (True, nn.MaxPool2d(2)),
                       (True, nn.MaxPool2d(3, stride=2, padding=1))]:
        ref = torch.relu(x) if relu else x
        ref = pool(ref) if pool is not None else ref
        got = NumbaPostOps(PostOps(relu, pool))(x)
        assert torch.equal(torch.nan_to_num(got, nan=7.0), torch.nan_to_num(ref, nan=7.0))
        assert torch.equal(got.isnan(), ref.isnan())


def test_fused_execution_refuses_a_torch_draw():
    analog = convert_to_crossbar(lenet(), CONFIGS["ideal"])
    mapping.set_execution(analog, "torch")
    mapping.resample(analog, torch.Generator().manual_seed(0))
    set_execution(analog, "fused")
    with pytest.raises(mapping.NotProgrammedError, match="resample"):
        analog(torch.randn(1, 1, 28, 28))


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("net", sorted(NETS))
def test_batched_samples_do_not_depend_on_the_group_size(net, cfg):
    build, side = NETS[net]
    model = build()
    data = teacher_data(model, side)
    analog = convert_to_crossbar(model, CONFIGS[cfg])
    one = run_monte_carlo(analog, data, samples=3, seed=4, progress=False, engine="batched",
                          group_size=1)
    three = run_monte_carlo(analog, data, samples=3, seed=4, progress=False, engine="batched",
                            group_size=3)
    ref = run_monte_carlo(analog, data, samples=3, seed=4, progress=False, engine="reference")
    assert one.engine == "batched" and ref.engine == "reference"
    np.testing.assert_array_equal(one.accuracies, three.accuracies)
    # the same cells; float32 sums in another order may move an image at a rounding boundary
    assert np.abs(one.accuracies - ref.accuracies).max() <= 1 / one.n_images + 1e-12
    assert set(executions(analog).values()) == {"reference"}      # restored after the run


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_samples_on_cuda_match_the_cpu():
    model = compensated_lenet()
    data = teacher_data(model, 28)
    analog = convert_to_crossbar(model, CONFIGS["8-bit"])
    cpu = run_monte_carlo(analog, data, samples=4, seed=4, progress=False, engine="batched")
    gpu = run_monte_carlo(analog, data, samples=4, seed=4, progress=False, device="cuda")
    assert gpu.engine == "batched"
    assert np.abs(cpu.accuracies - gpu.accuracies).max() <= 1 / cpu.n_images + 1e-12
    analog.cpu()
    ref = run_monte_carlo(analog, data, samples=4, seed=4, progress=False, engine="fused")
    assert np.abs(ref.accuracies - gpu.accuracies).max() <= 1 / cpu.n_images + 1e-12
