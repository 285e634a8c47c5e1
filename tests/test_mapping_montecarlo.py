"""Monte-Carlo evaluation, layer selection, accuracy and the hardware report."""

import json

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mapping
from mapping import (
    CrossbarConv2d,
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
from mapping import kernels
from mapping.fastpath import LayerStatics, PostOps, fused_forward, sample_weights
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


def pool_net():
    """Strided/dilated convs, a padded 3x3 max-pool right after a conv, a ReLU-only tail."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 5, 3, stride=2, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(5, 6, 3, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(24, 4)).eval()


def test_fused_relu_maxpool_equals_torch_ops_bit_for_bit():
    c = XbarConfig(tile=TileConfig(16, 8), device=DeviceConfig(sigma=0.5),
                   dac=DACConfig(bits=8), adc=ADCConfig(bits=6))
    analog = convert_to_crossbar(pool_net(), c)
    program(analog, 2)
    wide = CrossbarConv2d.from_float(nn.Conv2d(5, 32, 3), c)   # channel-vectorised kernel
    wide.program(4)
    h = torch.randn(5, 2, 40, 40)
    h[0, :, :8, :8] = 0.0                                # all-zero receptive fields
    convs = [layer for _, layer in crossbar_layers(analog) if isinstance(layer, CrossbarConv2d)]
    for layer in convs + [wide]:
        if layer is not convs[0]:
            h = torch.randn(3, 5, 8, 8) if layer is wide else F.max_pool2d(h, 3, 2, 1)
        st = LayerStatics(layer)
        w = sample_weights(layer)
        wts = np.stack([w, w * 0.5])
        with torch.no_grad():
            plain = fused_forward(st, layer, h, wts)
            for relu, pool in [(True, None), (False, nn.MaxPool2d(2)),
                               (True, nn.MaxPool2d(3, stride=2, padding=1)),
                               (True, nn.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)))]:
                ref = plain.flatten(0, 1)
                ref = torch.relu(ref) if relu else ref
                ref = pool(ref) if pool is not None else ref
                got = fused_forward(st, layer, h, wts, post=PostOps(relu, pool))
                assert torch.equal(got.flatten(0, 1), ref), (relu, pool)
        h = plain[0]


def test_conv_kernel_with_one_input_per_sample_equals_separate_calls():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 2, 9, 9)).astype(np.float32)      # (S, B, C, H, W)
    wt = rng.standard_normal((3, 18, 5)).astype(np.float32)
    gain = rng.uniform(0.01, 0.1, (2, 5))
    step = rng.uniform(0.5, 2.0, (2, 5))
    args = (np.array([0, 9, 18]), gain, step, rng.standard_normal(5).astype(np.float32),
            np.array([1.0, 127.0, 0.0, 127.0]), np.array([3, 3, 1, 1, 1, 1, 7, 7, 0, 0]),
            np.zeros((2, 0)), 1, np.array([2, 2, 2, 2, 0, 0, 1, 1]), np.zeros(8, np.int64),
            np.zeros(0, np.float32))
    out = np.empty((3, 2, 5, 3, 3), np.float32)
    kernels.analog_conv_positions(x, wt, *args, out)
    for s in range(3):
        one = np.empty((1, 2, 5, 3, 3), np.float32)
        kernels.analog_conv_positions(x[s:s + 1], wt[s:s + 1], *args, one)
        np.testing.assert_array_equal(out[s], one[0])


def test_monte_carlo_fusion_is_exact_thread_independent_and_restores_the_model():
    model = pool_net()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(90, 2, 24, 24, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    data = [(x[i:i + 40], y[i:i + 40]) for i in range(0, 90, 40)]
    analog = convert_to_crossbar(model, XbarConfig.rram_lognormal(0.4, n_rows=16, n_cols=8))
    before = [m for m in analog.modules()]
    res = run_monte_carlo(analog, data, samples=4, seed=1, progress=False)
    assert [m for m in analog.modules()] == before             # skipped modules put back
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = run_monte_carlo(analog, data, samples=4, seed=1, progress=False, group_size=3)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(res.accuracies, one.accuracies)
    slow = []
    for seq in np.random.SeedSequence(1).spawn(4):
        program(analog, np.random.default_rng(seq))
        slow.append(evaluate_accuracy(analog, data))
    np.testing.assert_allclose(res.accuracies, slow, atol=0.012)   # rare 1-LSB ADC flips
    assert 0.2 < res.mean < 1.0                               # the variation is visible


def test_hooked_digital_modules_are_not_fused():
    model = lenet()
    data, _, _ = teacher_data(model, n=60, batch=30)
    analog = convert_to_crossbar(model, XbarConfig.rram_lognormal(0.5))
    plain = run_monte_carlo(analog, data, samples=2, seed=3, progress=False)
    calls = []
    analog[2].register_forward_hook(lambda m, i, o: calls.append(o.shape))
    hooked = run_monte_carlo(analog, data, samples=2, seed=3, progress=False)
    assert calls and all(s[1:] == (6, 14, 14) for s in calls)     # the pool really ran
    np.testing.assert_array_equal(plain.accuracies, hooked.accuracies)


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


def test_warmup_compiles_every_kernel_and_reports_seconds():
    import mapping

    seconds = mapping.warmup()
    assert isinstance(seconds, float) and seconds >= 0.0
