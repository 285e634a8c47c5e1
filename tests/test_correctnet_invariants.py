"""Invariants of the correctnet layer that any correct implementation keeps (issue 7).

- CorrectNet with an empty plan is its base network: same function, same Monte-Carlo
  accuracies sample for sample.
- A sweep point at sigma = 0 with ideal converters gives the clean accuracy exactly in every
  device sample.
"""

import mapping
import pytest
import torch
from xbar import XbarConfig

from correctnet.compensation.modules import compensated_layers, insert_compensation
from correctnet.sweep.simulate import point_config, simulate_model
from correctnet.workloads.data import load_dataset, make_loader
from correctnet.workloads.models import build_model


@pytest.fixture(scope="module")
def net_and_data():
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    data = make_loader(load_dataset("fashion-mnist", "test", limit=200), 100)
    return model, data


def test_empty_plan_is_the_base_network(net_and_data):
    model, data = net_and_data
    comp = insert_compensation(model, {})
    assert comp is not model and compensated_layers(comp) == {}
    x = next(iter(data))[0]
    with torch.no_grad():
        assert torch.equal(comp(x), model(x))
    cfg = XbarConfig.rram_lognormal(0.5)
    runs = [mapping.run_monte_carlo(mapping.convert_to_crossbar(m, cfg), data, samples=3,
                                    seed=11, progress=False) for m in (model, comp)]
    assert list(runs[1].accuracies) == list(runs[0].accuracies)
    assert runs[1].mean == runs[0].mean and runs[1].std == runs[0].std


def test_sigma_zero_point_equals_the_clean_accuracy(net_and_data):
    model, data = net_and_data
    config = point_config(0.0, 128, adc_bits=None, dac_bits=None, level="weight")
    assert config == XbarConfig.rram_lognormal(0.0)
    out = simulate_model(model, data, config, samples=3, seed=0, progress=False)
    assert out["clean_accuracy"] == mapping.evaluate_accuracy(model, data)
    assert out["accuracies"] == [out["clean_accuracy"]] * 3
    # mean and std of equal accuracies differ from (clean, 0) only by the rounding of the sums
    assert out["mean"] == pytest.approx(out["clean_accuracy"], rel=1e-12)
    assert out["std"] == pytest.approx(0.0, abs=1e-12)
