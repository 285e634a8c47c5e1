"""The fused Monte-Carlo path on a network with CorrectNet compensation.

A compensated layer wraps a crossbar layer with a digital generator and compensator
(``correctnet.compensation``); mapping knows nothing about the wrapper: the crossbar layer
inside runs the fused kernel, the digital modules around it run as plain torch.
"""

import numpy as np
import pytest
import torch

from correctnet.compensation.modules import compensation_parameters, insert_compensation
from correctnet.workloads.models import build_model
from mapping import MappingError, convert_to_crossbar, crossbar_layers, run_monte_carlo
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

PLAN = {"features.conv1": 1.0, "features.conv2": 1.0}


def compensated_lenet():
    """LeNet-5 with conv1 and conv2 compensated; compensators moved away from identity."""
    torch.manual_seed(0)
    model = insert_compensation(build_model("lenet5").eval(), PLAN)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in compensation_parameters(model):
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def teacher_data(model, n=120, batch=40):
    """Inputs labelled by the float model itself (clean accuracy 1.0)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 1, 28, 28, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


CONFIGS = {
    "ideal": XbarConfig(tile=TileConfig(64, 32), device=DeviceConfig(sigma=0.5),
                        dac=DACConfig(bits=None), adc=ADCConfig(bits=None)),
    "8-bit": XbarConfig(tile=TileConfig(64, 32), device=DeviceConfig(sigma=0.5),
                        dac=DACConfig(bits=8), adc=ADCConfig(bits=8)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_compensated_network_runs_fused_and_matches_the_reference(name):
    model = compensated_lenet()
    data = teacher_data(model)
    analog = convert_to_crossbar(model, CONFIGS[name])
    names = [n for n, _ in crossbar_layers(analog)]
    assert "features.conv1.base" in names and "features.conv2.base" in names
    fast = run_monte_carlo(analog, data, samples=3, seed=7, progress=False)
    ref = run_monte_carlo(analog, data, samples=3, seed=7, progress=False, engine="reference")
    assert fast.engine == "fused" and ref.engine == "reference"
    assert fast.fused_layers == names and ref.fused_layers == []
    assert 0.1 < ref.mean < 0.99                       # variation is visible
    np.testing.assert_array_equal(fast.accuracies, ref.accuracies)
    again = run_monte_carlo(analog, data, samples=3, seed=7, progress=False, engine="fused",
                            group_size=1)
    np.testing.assert_array_equal(again.accuracies, fast.accuracies)
    assert again.to_dict()["engine"] == "fused"


def test_engine_errors():
    model = compensated_lenet()
    data = teacher_data(model, n=8, batch=8)
    analog = convert_to_crossbar(model, CONFIGS["ideal"])
    with pytest.raises(MappingError, match="engine must be one of"):
        run_monte_carlo(analog, data, samples=1, progress=False, engine="numba")
    noisy = convert_to_crossbar(model, XbarConfig(device=DeviceConfig(sigma=0.5,
                                                                      read_noise=0.01)))
    with pytest.raises(MappingError, match="engine='fused' needs"):
        run_monte_carlo(noisy, data, samples=1, progress=False, engine="fused")
    res = run_monte_carlo(noisy, data, samples=1, progress=False)
    assert res.engine == "reference" and res.fused_layers == []
