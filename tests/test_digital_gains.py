"""Per-layer digital gains (correctnet.workloads.gains): placement, maths, cost, training."""

import numpy as np
import pytest
import torch
from torch import nn

from correctnet.cli import main
from correctnet.errors import UsageError
from correctnet.study.presets import get_preset
from correctnet.study.report import gains_section
from correctnet.study.report_markdown import layers_markdown
from correctnet.training.train import TrainConfig, _parameter_groups, train_model
from correctnet.workloads.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from correctnet.workloads.data import load_dataset, make_loader
from correctnet.workloads.gains import (DigitalGain, add_digital_gains, digital_gain_of,
                                        digital_gains, gain_cost)
from correctnet.workloads.models import build_model
from mapping import (convert_to_crossbar, crossbar_layers, run_monte_carlo, set_execution,
                     unconverted_layers)
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

META = dict(model="lenet5", dataset="fashion-mnist", num_classes=10, in_channels=1,
            input_size=28)


def _gained(kind="channel", seed=0):
    """LeNet-5 with gains moved away from 1 (so that a wrong placement shows)."""
    torch.manual_seed(seed)
    model = build_model("lenet5", digital_gain=kind).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, gain in digital_gains(model):
            gain.log_gain.copy_(0.5 * torch.randn(gain.log_gain.shape, generator=g))
    return model


def test_gain_forward_is_x_times_exp_log_gain():
    gain = DigitalGain(3, "c")
    with torch.no_grad():
        gain.log_gain.copy_(torch.tensor([0.0, 0.5, -1.0]))
    x = torch.randn(2, 3, 4, 5)
    want = x.numpy() * np.exp(np.array([0.0, 0.5, -1.0], dtype=np.float32))[None, :, None, None]
    np.testing.assert_allclose(gain(x).detach().numpy(), want, rtol=1e-6)
    flat = torch.randn(4, 3)
    np.testing.assert_allclose(gain(flat).detach().numpy(),
                               flat.numpy() * np.exp([0.0, 0.5, -1.0]).astype(np.float32),
                               rtol=1e-6)
    scalar = DigitalGain(1, "c", per_channel=False)
    with torch.no_grad():
        scalar.log_gain.fill_(0.25)
    np.testing.assert_allclose(scalar(x).detach().numpy(), x.numpy() * np.float32(np.exp(0.25)),
                               rtol=1e-6)


def test_gain_errors():
    with pytest.raises(UsageError, match="integer >= 1"):
        DigitalGain(0)
    with pytest.raises(UsageError, match="scalar DigitalGain has 1 channel"):
        DigitalGain(4, per_channel=False)
    with pytest.raises(UsageError, match="digital_gain must be one of"):
        build_model("lenet5", digital_gain="column")
    model = build_model("lenet5", digital_gain="scalar")
    with pytest.raises(UsageError, match="'scalar' digital gains already"):
        add_digital_gains(model, "channel")


def test_placement_after_relu_and_pool_and_none_before_batchnorm():
    lenet = build_model("lenet5", digital_gain="channel")
    assert list(lenet.features._modules) == ["conv1", "relu1", "pool1", "conv1_gain", "conv2",
                                             "relu2", "pool2", "conv2_gain"]
    assert list(lenet.classifier._modules) == ["fc1", "relu3", "fc1_gain", "fc2", "relu4",
                                               "fc2_gain", "fc3", "fc3_gain"]
    assert [g.log_gain.numel() for _, g in digital_gains(lenet)] == [6, 16, 120, 84, 10]
    assert [g.layer for _, g in digital_gains(lenet)] == [
        "features.conv1", "features.conv2", "classifier.fc1", "classifier.fc2", "classifier.fc3"]
    bn = build_model("vgg16_bn", width=0.125, digital_gain="channel")
    assert [g.layer for _, g in digital_gains(bn)] == [
        "classifier.fc1", "classifier.fc2", "classifier.fc3"]      # BN is the convs' gain
    plain_vgg = build_model("vgg16", width=0.125, digital_gain="scalar")
    assert len(digital_gains(plain_vgg)) == 16 and digital_gain_of(plain_vgg) == "scalar"
    assert digital_gain_of(build_model("lenet5")) == "none"
    again = add_digital_gains(lenet, "channel")                     # idempotent
    assert again is lenet and len(digital_gains(lenet)) == 5


def test_gain_after_relu_and_pool_equals_gain_right_after_the_layer():
    """relu(g x) = g relu(x), maxpool(g x) = g maxpool(x) for g > 0: the placement is exact."""
    model = _gained()
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    f, c = model.features, model.classifier
    with torch.no_grad():
        def gain(name, y):
            return y * getattr(model, name[0])._modules[name[1]].log_gain.exp().view(
                1, -1, *([1] * (y.dim() - 2)))
        h = gain(("features", "conv1_gain"), f.conv1(x))
        h = f.pool1(torch.relu(h))
        h = f.pool2(torch.relu(gain(("features", "conv2_gain"), f.conv2(h)))).flatten(1)
        h = torch.relu(gain(("classifier", "fc1_gain"), c.fc1(h)))
        h = torch.relu(gain(("classifier", "fc2_gain"), c.fc2(h)))
        want = gain(("classifier", "fc3_gain"), c.fc3(h))
        np.testing.assert_allclose(model(x).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_gain_cost_counts_values_and_multiplies():
    cost = gain_cost(build_model("lenet5", digital_gain="channel"), (1, 28, 28))
    # after the pools: 6 x 14 x 14 + 16 x 5 x 5 values, then 120 + 84 + 10
    assert cost == {"parameters": 6 + 16 + 120 + 84 + 10,
                    "multiplies": 6 * 14 * 14 + 16 * 5 * 5 + 120 + 84 + 10, "layers": 5}
    assert gain_cost(build_model("lenet5"), (1, 28, 28)) == {"parameters": 0, "multiplies": 0,
                                                             "layers": 0}
    assert gain_cost(build_model("lenet5", digital_gain="scalar"), (1, 28, 28))["parameters"] == 5


def test_checkpoint_round_trip_keeps_the_gains(tmp_path):
    model = _gained("channel")
    path = save_checkpoint(tmp_path / "g.pt", model, dict(META))
    assert read_checkpoint(path)["meta"]["digital_gain"] == "channel"
    back, _ = load_checkpoint(path)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    plain = save_checkpoint(tmp_path / "p.pt", build_model("lenet5"), dict(META))
    assert digital_gain_of(load_checkpoint(plain)[0]) == "none"


def test_gains_stay_digital_and_the_fused_engine_matches_the_reference():
    model = _gained("channel")
    cfg = XbarConfig(tile=TileConfig(64, 32), device=DeviceConfig(sigma=0.5),
                     dac=DACConfig(bits=8), adc=ADCConfig(bits=8))
    analog = convert_to_crossbar(model, cfg)
    assert len(crossbar_layers(analog)) == 5 and unconverted_layers(analog) == []
    assert len(digital_gains(analog)) == 5
    g = torch.Generator().manual_seed(2)
    x = torch.randn(48, 1, 28, 28, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    data = [(x[:24], y[:24]), (x[24:], y[24:])]
    set_execution(analog, "reference")
    fast = run_monte_carlo(analog, data, samples=2, seed=11, progress=False, engine="fused")
    ref = run_monte_carlo(analog, data, samples=2, seed=11, progress=False, engine="reference")
    assert fast.fused_layers == [n for n, _ in crossbar_layers(analog)]
    assert np.abs(fast.accuracies - ref.accuracies).max() <= 1 / fast.n_images + 1e-12


def test_training_learns_the_gains_in_the_scale_group_and_keeps_the_constraint(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet5", digital_gain="channel")
    cfg = TrainConfig(method="lipschitz", constraint="hard", epochs=1, learn_output_scale=True)
    params, scales = _parameter_groups(model, None, torch.device("cpu"))
    gain_ids = {id(g.log_gain) for _, g in digital_gains(model)}
    assert gain_ids <= {id(p) for p in scales} and not gain_ids & {id(p) for p in params}
    loader = make_loader(load_dataset("fashion-mnist", "train", limit=256), 64, shuffle=True)
    hist = train_model(model, loader, None, cfg, checkpoint_path=tmp_path / "h.pt",
                       meta=dict(META), progress=False)
    for name, d in hist["diagnostics"][-1].items():     # the analog matrices stay at lambda
        assert d["sigma_max"] == pytest.approx(hist["lambda"], rel=1e-4), name
    moved = max(float(g.log_gain.detach().abs().max()) for _, g in digital_gains(model))
    assert moved > 1e-3                                  # the gains learned
    assert read_checkpoint(tmp_path / "h.pt")["meta"]["digital_gain"] == "channel"


def test_cli_digital_gain_and_resume_check(tmp_path, capsys):
    base = ["train", "--epochs", "1", "--limit", "128", "--batch-size", "64", "--method",
            "lipschitz", "--out", str(tmp_path / "a")]
    assert main([*base, "--digital-gain", "scalar"]) == 0
    capsys.readouterr()
    assert read_checkpoint(tmp_path / "a" / "checkpoint.pt")["meta"]["digital_gain"] == "scalar"
    assert main([*base, "--digital-gain", "channel", "--resume"]) == 2
    assert "digital_gain 'scalar', not --digital-gain 'channel'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--digital-gain", "column"])


def test_preset_fields_are_validated():
    import dataclasses

    quick = get_preset("quick")
    with pytest.raises(UsageError, match="lipschitz_constraint"):
        dataclasses.replace(quick, lipschitz_constraint="exact")
    with pytest.raises(UsageError, match="lipschitz_digital_gain"):
        dataclasses.replace(quick, lipschitz_digital_gain="column")


class _Ctx:
    """The two things gains_section reads from a StudyContext."""

    info = {"in_channels": 1, "input_size": 28}

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def network(self, variant: str) -> nn.Module:
        return self.model


def test_report_gains_section_and_markdown():
    model = _gained("channel")
    section = gains_section(_Ctx(model), "lipschitz")
    values = torch.cat([g.gain for _, g in digital_gains(model)])
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d,
                                                                              nn.Linear)))
    assert section["kind"] == "channel" and section["parameters"] == 236
    assert section["fraction"] == pytest.approx(236 / weights)
    assert section["min"] == pytest.approx(float(values.min()), rel=1e-6)
    assert section["max"] == pytest.approx(float(values.max()), rel=1e-6)
    assert gains_section(_Ctx(build_model("lenet5")), "plain") is None
    layer = {"sigma_max": 0.34, "sigma_min": 0.3, "operator_norm": None, "binds": True}
    report = {"lambda": 0.34, "variants": {"lipschitz": {"layers": {"fc": layer},
                                                         "constraint": "hard",
                                                         "digital_gains": section}}}
    text = "\n".join(layers_markdown(report))
    assert "constraint hard, channel digital gains" in text and "236 values" in text
