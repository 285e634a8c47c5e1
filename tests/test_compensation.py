import pytest
import torch
from torch import nn

from correctnet.compensation.modules import (
    CompensatedLayer,
    PlanError,
    compensable_layers,
    compensation_cost,
    compensation_parameters,
    generator_width,
    insert_compensation,
)
from correctnet.compensation.overhead import count_parameters, model_overhead, plan_overhead
from correctnet.compensation.plan import format_plan, normalize_plan, parse_plan
from correctnet.workloads.models import build_model


def lenet():
    torch.manual_seed(0)
    return build_model("lenet5").eval()


def test_generator_width():
    assert generator_width(16, 0.5) == 8
    assert generator_width(16, 0.01) == 1
    assert generator_width(10, 0.25) == 2  # round(2.5) banker's -> 2
    with pytest.raises(PlanError, match="ratio"):
        generator_width(16, 0.0)
    with pytest.raises(PlanError, match="n must be"):
        generator_width(0, 1.0)


def test_conv_and_linear_shapes_and_counts():
    model = lenet()
    comp = insert_compensation(model, {"features.conv2": 0.5, "classifier.fc3": 1.0})
    conv = comp.get_submodule("features.conv2")
    fc = comp.get_submodule("classifier.fc3")
    assert isinstance(conv, CompensatedLayer) and isinstance(fc, CompensatedLayer)
    # conv2: l=6, n=16, m=8
    assert conv.generator.conv.weight.shape == (8, 6 + 16, 1, 1)
    assert conv.compensator.conv.weight.shape == (16, 16 + 8, 1, 1)
    x = torch.randn(3, 6, 14, 14)
    y = conv.base(x)
    assert conv.generator(x, y).shape == (3, 8, 10, 10)
    assert conv(x).shape == (3, 16, 10, 10)
    # fc3: in=84, n=10, m=10
    assert fc.generator.fc.weight.shape == (10, 84 + 10)
    assert fc.compensator.fc.weight.shape == (10, 20)
    assert fc(torch.randn(4, 84)).shape == (4, 10)
    # overhead: counted parameters equal the closed form
    n_comp = sum(p.numel() for p in compensation_parameters(comp))
    assert n_comp == (8 * 22 + 8 + 16 * 24 + 16) + (10 * 94 + 10 + 10 * 20 + 10)
    assert n_comp == compensation_cost(model.features.conv2, 0.5) + compensation_cost(
        model.classifier.fc3, 1.0)
    assert count_parameters(model) == 61706 == count_parameters(comp)
    assert model_overhead(comp) == pytest.approx(n_comp / 61706)
    assert plan_overhead(model, {"features.conv2": 0.5, "classifier.fc3": 1.0}) == pytest.approx(
        model_overhead(comp))
    assert plan_overhead(model, {"features.conv2": 1.0}) == pytest.approx(896 / 61706)


def test_fresh_compensated_layer_equals_original():
    model = lenet()
    comp = insert_compensation(model, {"features.conv1": 2.0, "features.conv2": 1.0,
                                       "classifier.fc1": 0.1, "classifier.fc3": 0.5})
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(comp(x), model(x), rtol=0, atol=1e-6)
    # the original model is untouched (deep copy), inplace modifies it
    assert not isinstance(model.features.conv1, CompensatedLayer)
    same = insert_compensation(model, {"features.conv1": 1.0}, inplace=True)
    assert same is model and isinstance(model.features.conv1, CompensatedLayer)


def test_compensable_layers_and_plan_errors():
    model = lenet()
    names = compensable_layers(model)
    assert names == ["features.conv1", "features.conv2", "classifier.fc1", "classifier.fc2",
                     "classifier.fc3"]
    comp = insert_compensation(model, {"features.conv2": 1.0})
    assert compensable_layers(comp) == ["features.conv2.base" if n == "features.conv2" else n
                                        for n in names]
    with pytest.raises(PlanError, match="features.nope"):
        insert_compensation(model, {"features.nope": 1.0})
    with pytest.raises(PlanError, match="finite"):
        normalize_plan({"features.conv1": float("nan")})
    with pytest.raises(PlanError, match="LAYER=RATIO"):
        parse_plan("conv2")
    with pytest.raises(PlanError, match="number"):
        parse_plan("conv2=abc")
    with pytest.raises(PlanError, match="cannot compensate"):
        from correctnet.compensation.modules import make_compensated_layer
        make_compensated_layer(nn.ReLU(), 1.0)


def test_parse_and_format_plan():
    plan = parse_plan(" features.conv2=0.5, classifier.fc3=1 ,features.conv1=0")
    assert plan == {"classifier.fc3": 1.0, "features.conv2": 0.5}
    assert parse_plan(format_plan(plan)) == plan
    assert format_plan({}) == "none" and parse_plan("") == {}


def test_pointwise_conv_equals_concat_and_convolution_with_gradients():
    from correctnet.compensation.modules import pointwise_conv

    torch.manual_seed(3)
    conv = nn.Conv2d(7, 5, 1)
    a = torch.randn(4, 3, 6, 5, requires_grad=True)
    b = torch.randn(4, 4, 6, 5, requires_grad=True)
    ref = conv(torch.cat([a, b], dim=1))
    out = pointwise_conv([a, b], conv)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), [a, b, conv.weight, conv.bias])
    want = torch.autograd.grad(ref.square().sum(), [a, b, conv.weight, conv.bias])
    for got, exp in zip(grads, want):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size_in", [8, 11])
def test_conv_generator_and_compensator_follow_their_equations(size_in):
    from correctnet.compensation.modules import ConvCompensator, ConvGenerator

    torch.manual_seed(4)
    gen, comp = ConvGenerator(3, 5, 2), ConvCompensator(5, 2)
    with torch.no_grad():
        comp.conv.weight.add_(0.3 * torch.randn_like(comp.conv.weight))
    x, y = torch.randn(2, 3, size_in, size_in), torch.randn(2, 5, 8, 8)
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, (8, 8))
    g = torch.relu(gen.conv(torch.cat([pooled, y], 1)))
    torch.testing.assert_close(gen(x, y), g, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(comp(y, g), comp.conv(torch.cat([y, g], 1)), rtol=1e-5,
                               atol=1e-6)


def test_hardware_report_costs_the_compensators_digital_macs():
    # The generator/compensator 1x1 convs run as modules (PointwiseConv), so the report's
    # forward hooks count them: MACs = output elements * input channels of each 1x1 conv.
    from mapping import convert_to_crossbar, hardware_report
    from xbar import DeviceConfig, TileConfig, XbarConfig

    from correctnet.compensation.modules import PointwiseConv, insert_compensation
    from correctnet.workloads.models import build_model

    model = insert_compensation(build_model("lenet5").eval(), {"features.conv2": 1.0})
    convs = {n: m for n, m in model.named_modules() if isinstance(m, PointwiseConv)}
    assert len(convs) == 2
    analog = convert_to_crossbar(model, XbarConfig(tile=TileConfig(64, 64),
                                                   device=DeviceConfig(sigma=0.0)))
    report = hardware_report(analog, input_shape=(1, 28, 28))
    rows = {r["name"]: r for r in report.digital["rows"]}
    side = 10                                 # conv2 (5x5, valid) maps 14x14 to 10x10
    for name, conv in convs.items():
        assert rows[name]["macs"] == conv.out_channels * side * side * conv.in_channels
    assert report.digital["total"]["energy_j"] > 0
    assert report.cost_total["energy_j"] > report.total["energy_j"]


def test_receptive_pool_averages_each_outputs_receptive_field():
    """A valid 5x5 conv on 14x14 gives 10x10; pooled[i, j] = mean of x[i:i+5, j:j+5]."""
    from correctnet.compensation.modules import ConvGenerator, make_compensated_layer

    conv = torch.nn.Conv2d(3, 4, 5)
    layer = make_compensated_layer(conv, 1.0)
    gen = layer.generator
    assert isinstance(gen, ConvGenerator) and gen.pool == "receptive"
    x = torch.randn(2, 3, 14, 14)
    pooled = gen.pooled(x, (10, 10))
    i, j = 3, 7
    assert torch.allclose(pooled[:, :, i, j], x[:, :, i:i + 5, j:j + 5].mean(dim=(-1, -2)),
                          atol=1e-6)
    adaptive = ConvGenerator(3, 4, 4, window=gen.window, pool="adaptive")
    assert not torch.allclose(adaptive.pooled(x, (10, 10)), pooled)   # windows drift


def test_receptive_pool_counts_zero_padding_like_the_conv():
    from correctnet.compensation.modules import make_compensated_layer

    conv = torch.nn.Conv2d(1, 2, 5, padding=2)
    gen = make_compensated_layer(conv, 1.0).generator
    x = torch.ones(1, 1, 8, 8)
    pooled = gen.pooled(x, (8, 8))
    assert pooled[0, 0, 0, 0] == pytest.approx(9 / 25)      # corner: 3x3 ones of 5x5
    assert pooled[0, 0, 4, 4] == pytest.approx(1.0)


def test_dilated_conv_falls_back_to_adaptive_and_bad_pool_is_refused():
    from correctnet.compensation.modules import ConvGenerator, make_compensated_layer
    from correctnet.errors import PlanError

    gen = make_compensated_layer(torch.nn.Conv2d(1, 2, 3, dilation=2), 1.0).generator
    assert gen.window is None
    with pytest.raises(PlanError, match="generator pool"):
        ConvGenerator(1, 2, 2, pool="max")


def test_old_compensation_files_load_with_the_adaptive_pool(tmp_path):
    from correctnet.compensation.modules import ConvGenerator, insert_compensation
    from correctnet.compensation.train import load_compensation, save_compensation
    from correctnet.workloads.models import build_model

    base = build_model("lenet5")
    comp = insert_compensation(base, {"features.conv2": 1.0})
    path = save_compensation(tmp_path / "c.pt", comp, {"features.conv2": 1.0})
    payload = torch.load(path, weights_only=True)
    assert payload["generator_pool"] == "receptive"
    loaded, _ = load_compensation(path, base)
    assert {m.pool for m in loaded.modules() if isinstance(m, ConvGenerator)} == {"receptive"}
    del payload["generator_pool"]                       # a file saved before the field
    torch.save(payload, path)
    loaded, _ = load_compensation(path, base)
    assert {m.pool for m in loaded.modules() if isinstance(m, ConvGenerator)} == {"adaptive"}
