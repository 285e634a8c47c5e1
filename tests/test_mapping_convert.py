"""Module swap, im2col lowering and digital marking (mapping.convert / mapping.layers)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import mapping
from mapping import (
    ArgumentTypeError,
    CrossbarConv2d,
    CrossbarLinear,
    MappingError,
    UnsupportedLayerError,
    convert_to_crossbar,
    crossbar_layers,
    default_mapping,
    is_digital,
    mark_digital,
    unconverted_layers,
)
from naive import mapping_conv_as_matmul
from xbar import XbarConfig


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def vgg_like():
    layers, c = [], 3
    for v in (16, "M", 32, 32, "M", 64):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
            c = v
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
               nn.Linear(32, 10)]
    return nn.Sequential(*layers)


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("build,shape", [(lenet, (5, 1, 28, 28)), (vgg_like, (3, 3, 16, 16))])
def test_ideal_config_reproduces_torch_logits(build, shape, backend):
    torch.manual_seed(0)
    model = _randomise_bn(build()).eval()
    x = torch.randn(shape)
    analog = convert_to_crossbar(model, XbarConfig.ideal(32, 32))
    mapping.set_backend(analog, backend)
    with torch.no_grad():
        ref, out = model(x), analog(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert len(crossbar_layers(analog)) == sum(
        isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


ODD_CONVS = [
    dict(in_channels=3, out_channels=5, kernel_size=3, stride=2),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding=3),
    dict(in_channels=2, out_channels=3, kernel_size=3, dilation=2, padding=1),
    dict(in_channels=7, out_channels=9, kernel_size=1),
    dict(in_channels=2, out_channels=4, kernel_size=(2, 5), stride=(1, 2), padding=(1, 0)),
    dict(in_channels=2, out_channels=3, kernel_size=4, padding="same", bias=False),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, padding_mode="reflect"),
]


@pytest.mark.parametrize("kw", ODD_CONVS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in
                                                                   kw.items()))
def test_odd_conv_shapes_ideal(kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(**kw).eval()
    x = torch.randn(2, kw["in_channels"], 11, 9)
    analog = convert_to_crossbar(conv, XbarConfig.ideal(4, 3))
    assert isinstance(analog, CrossbarConv2d)
    for backend in ("numba", "torch"):
        analog.backend = backend
        with torch.no_grad():
            torch.testing.assert_close(analog(x), conv(x), atol=1e-4, rtol=1e-4)


def test_im2col_matches_loop_oracle():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)).eval()
    x = torch.randn(2, 2, 7, 6)
    analog = convert_to_crossbar(conv, XbarConfig.ideal(5, 2))
    ref = mapping_conv_as_matmul(x.numpy().astype(np.float64), conv.weight.detach().numpy(),
                                 conv.bias.detach().numpy(), conv.stride, conv.padding,
                                 conv.dilation)
    with torch.no_grad():
        np.testing.assert_allclose(analog(x).numpy(), ref, atol=1e-4)


def test_tile_size_does_not_change_ideal_results():
    torch.manual_seed(0)
    model = lenet().eval()
    x = torch.randn(4, 1, 28, 28)
    outs = []
    for n in (7, 64, 128, 1000):
        with torch.no_grad():
            outs.append(convert_to_crossbar(model, XbarConfig.ideal(n, n))(x))
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-4, rtol=1e-4)


def test_returns_copy_unless_inplace_and_keeps_hooks_mode_and_params():
    model = lenet().eval()
    seen = []
    model[7].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    analog = convert_to_crossbar(model, XbarConfig.ideal())
    assert isinstance(model[0], nn.Conv2d)            # original untouched
    assert isinstance(analog[7], CrossbarLinear) and not analog.training
    analog(torch.randn(2, 1, 28, 28))
    assert seen == [torch.Size([2, 120])]
    same = convert_to_crossbar(model, XbarConfig.ideal(), inplace=True)
    assert same is model and isinstance(model[0], CrossbarConv2d)


def test_parametrized_linear_converts():
    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    lin = nn.Linear(4, 3)
    parametrize.register_parametrization(lin, "weight", Double())
    model = nn.Sequential(lin)
    analog = convert_to_crossbar(model, XbarConfig.ideal())
    assert isinstance(analog[0], CrossbarLinear)
    x = torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), model(x), atol=1e-5, rtol=1e-5)


def test_digital_marked_modules_are_never_converted_nor_varied():
    model = nn.Sequential(nn.Linear(8, 8), mark_digital(nn.Sequential(nn.Linear(8, 8))),
                          nn.Linear(8, 3))
    assert is_digital(model[1]) and not is_digital(model[0])
    cfg = XbarConfig.rram_lognormal(0.5)
    analog = convert_to_crossbar(model, cfg)
    assert isinstance(analog[1][0], nn.Linear)
    assert [n for n, _ in crossbar_layers(analog)] == ["0", "2"]
    assert [n for n, _ in unconverted_layers(analog)] == ["1.0"]
    before = analog[1][0].weight.detach().clone()
    mapping.program(analog, 0)
    mapping.set_backend(analog, "torch")
    mapping.resample(analog)
    torch.testing.assert_close(analog[1][0].weight.detach(), before, rtol=0, atol=0)


def test_exclude_layer_config_fn_and_custom_mapping():
    model = lenet()
    analog = convert_to_crossbar(model, XbarConfig.ideal(), exclude=["0", nn.Linear])
    assert [n for n, _ in crossbar_layers(analog)] == ["3"]
    cfgs = {"3": XbarConfig.ideal(16, 16)}
    analog = convert_to_crossbar(model, XbarConfig.ideal(),
                                 layer_config_fn=lambda n, m: cfgs.get(n))
    assert [n for n, _ in crossbar_layers(analog)] == ["3"]
    assert analog[3].config.tile.n_rows == 16
    table = default_mapping()
    table.pop(nn.Conv2d)
    assert nn.Conv2d in default_mapping()             # a copy each call
    analog = convert_to_crossbar(model, XbarConfig.ideal(), mapping=table)
    assert {n for n, _ in unconverted_layers(analog)} == {"0", "3"}


def test_grouped_conv_raises_and_can_be_excluded():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 2, 1))
    with pytest.raises(UnsupportedLayerError, match="groups=2") as info:
        convert_to_crossbar(model, XbarConfig.ideal())
    assert isinstance(info.value, MappingError) and isinstance(info.value, TypeError)
    assert "'0'" in str(info.value)
    analog = convert_to_crossbar(model, XbarConfig.ideal(), exclude=["0"])
    assert [n for n, _ in unconverted_layers(analog)] == ["0"]


def test_bad_arguments_raise():
    with pytest.raises(ArgumentTypeError, match="XbarConfig"):
        convert_to_crossbar(lenet(), {"tile": 3})
    with pytest.raises(ArgumentTypeError, match="nn.Module"):
        convert_to_crossbar("net", XbarConfig.ideal())
    with pytest.raises(ArgumentTypeError):
        mark_digital(3)


def test_analog_layers_matches_what_convert_converts():
    from mapping import analog_layers, crossbar_layers

    inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    model = nn.Sequential(inner, mark_digital(nn.Linear(4, 4)),
                          nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)))
    names = [n for n, _ in analog_layers(model)]
    assert names == ["0.0", "2.0", "2.1"]
    analog = convert_to_crossbar(model, XbarConfig.ideal())
    assert [n for n, _ in crossbar_layers(analog)] == names
    assert [n for n, _ in analog_layers(analog)] == names
    assert [n for n, _ in analog_layers(model, exclude=["2.1"])] == ["0.0", "2.0"]
