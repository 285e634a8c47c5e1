"""Monte-Carlo evaluation, layer selection, accuracy and the hardware report."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import mapping
from mapping import (
    DataError,
    LayerSelectionError,
    MappingError,
    convert_to_crossbar,
    crossbar_layers,
    evaluate_accuracy,
    hardware_report,
    program,
    run_monte_carlo,
)
from naive import mapping_lognormal_accuracies
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig


def lenet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)).eval()


def teacher_data(model, n=240, batch=64, seed=0):
    """Inputs labelled by the clean model itself: clean accuracy 1.0, variation lowers it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)], x, y


def test_monte_carlo_agrees_with_plain_torch_lognormal_oracle():
    model = lenet()
    data, x, y = teacher_data(model)
    analog = convert_to_crossbar(model, XbarConfig.rram_lognormal(0.5))
    res = run_monte_carlo(analog, data, samples=24, seed=0, progress=False)
    ref = mapping_lognormal_accuracies(model, x, y, 0.5, samples=24, seed=1)
    assert 0.2 < ref.mean() < 0.98                      # the test can see a difference
    se = np.sqrt(res.std ** 2 / 24 + ref.std() ** 2 / 24)
    assert abs(res.mean - ref.mean()) < 4 * se + 0.01, (res.mean, ref.mean(), se)
    assert abs(res.std - ref.std()) < 0.6 * ref.std() + 0.01


def test_monte_carlo_fast_path_equals_programming_loop_and_repeats():
    model = lenet()
    data, _, _ = teacher_data(model, n=100, batch=30)
    c = XbarConfig(tile=TileConfig(64, 32), device=DeviceConfig(sigma=0.3),
                   dac=DACConfig(bits=8), adc=ADCConfig(bits=8))
    analog = convert_to_crossbar(model, c)
    res = run_monte_carlo(analog, data, samples=5, seed=4, layers=range(1, 5), progress=False)
    again = run_monte_carlo(analog, data, samples=5, seed=4, layers=range(1, 5), progress=False,
                            group_size=2)
    np.testing.assert_array_equal(res.accuracies, again.accuracies)
    slow = []
    for seq in np.random.SeedSequence(4).spawn(5):
        program(analog, np.random.default_rng(seq), layers=range(1, 5))
        slow.append(evaluate_accuracy(analog, data))
    np.testing.assert_allclose(res.accuracies, slow, atol=0.011)   # rare 1-LSB ADC flips
    assert res.samples == 5 and res.layers == ["3", "7", "9", "11"] and res.n_images == 100
    d = json.loads(json.dumps(res.to_dict()))
    assert d["mean"] == pytest.approx(float(np.mean(res.accuracies)))
    assert all(0.0 <= a <= 1.0 for a in d["accuracies"]) and "%" in str(res)


def test_unselected_layers_stay_exact():
    model = lenet()
    x = torch.randn(3, 1, 28, 28)
    analog = convert_to_crossbar(model, XbarConfig.rram_lognormal(0.5, n_rows=32, n_cols=32))
    names = [n for n, _ in crossbar_layers(analog)]
    program(analog, 1, layers=[names[-1]])
    for i, (_, layer) in enumerate(crossbar_layers(analog)):
        w = layer.crossbar.effective_weight()
        exact = np.allclose(w, layer.weight_matrix().detach().numpy(), atol=0, rtol=0)
        assert exact == (i != len(names) - 1)
    program(analog, 1, layers=slice(0, 0))
    with torch.no_grad():
        torch.testing.assert_close(analog(x), model(x), atol=1e-4, rtol=1e-4)
    # a layer's sample does not depend on which other layers are selected
    program(analog, 5, layers=[2])
    w_alone = crossbar_layers(analog)[2][1].crossbar.effective_weight()
    program(analog, 5)
    np.testing.assert_array_equal(crossbar_layers(analog)[2][1].crossbar.effective_weight(),
                                  w_alone)


@pytest.mark.parametrize("bad,match", [(["nope"], "no crossbar layer named 'nope'"),
                                       ([7], "out of range"), ([1.5], "names or ints"),
                                       (3.5, "range/slice, or names")])
def test_bad_layer_selection(bad, match):
    analog = convert_to_crossbar(lenet(), XbarConfig.ideal())
    with pytest.raises(LayerSelectionError, match=match) as info:
        program(analog, 0, layers=bad)
    assert isinstance(info.value, MappingError) and isinstance(info.value, ValueError)


def test_errors_for_unconverted_model_bad_rng_and_bad_data():
    with pytest.raises(LayerSelectionError, match="convert_to_crossbar"):
        program(lenet(), 0)
    analog = convert_to_crossbar(lenet(), XbarConfig.ideal())
    with pytest.raises(mapping.ArgumentTypeError, match="Generator"):
        program(analog, "seed")
    with pytest.raises(DataError, match="no batches"):
        run_monte_carlo(analog, [], samples=2, progress=False)
    with pytest.raises(DataError, match="inputs, labels"):
        evaluate_accuracy(analog, [torch.randn(2, 1, 28, 28)])
    with pytest.raises(DataError, match="samples"):
        run_monte_carlo(analog, [(torch.randn(2, 1, 28, 28), torch.zeros(2))], samples=0)


def test_evaluate_accuracy_and_ideal_monte_carlo():
    model = lenet()
    data, _, _ = teacher_data(model, n=64, batch=20)
    assert evaluate_accuracy(model, data) == 1.0
    analog = convert_to_crossbar(model, XbarConfig.ideal())
    res = run_monte_carlo(analog, data, samples=3, progress=False)
    np.testing.assert_array_equal(res.accuracies, [1.0, 1.0, 1.0])
    assert res.std == 0.0


def test_hardware_report_counts():
    analog = convert_to_crossbar(lenet(), XbarConfig.ideal(128, 128))
    rep = hardware_report(analog, input_shape=(1, 28, 28))
    rows = {r["name"]: r for r in rep.rows}
    assert rows["0"]["matrix"] == (6, 25) and rows["0"]["positions"] == 784
    assert rows["0"]["macs"] == 6 * 25 * 784 and rows["0"]["adc_conversions"] == 6 * 784
    assert rows["3"]["tile_grid"] == (2, 1) and rows["3"]["adc_conversions"] == 2 * 16 * 100
    assert rows["7"]["tiles"] == 4 and rows["7"]["cells"] == 4 * 2 * 128 * 128
    assert rep.total["macs"] == sum(r["macs"] for r in rep.rows)
    assert 0 < rep.total["utilisation"] <= 1 and rep.positions_known
    text = str(rep)
    assert "total" in text and "CrossbarConv2d" in text
    json.dumps(rep.to_dict())
    fresh = hardware_report(convert_to_crossbar(lenet(), XbarConfig.ideal()))
    assert not fresh.positions_known and "per output position" in str(fresh)
