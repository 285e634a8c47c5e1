import json

import mapping
import pytest
import torch
from xbar import XbarConfig

from correctnet.cli import main
from correctnet.compensation.modules import CompensatedLayer, PointwiseConv, insert_compensation
from correctnet.compensation.train import (
    CompensationConfig,
    load_compensation,
    save_compensation,
    train_compensation,
)
from correctnet.errors import RunConfigError
from correctnet.study.pipeline import STAGES, Pipeline
from correctnet.study.presets import Preset, get_preset
from correctnet.workloads.models import build_model


class Boom(RuntimeError):
    pass


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    calls = []

    def fail_in_search(name):
        calls.append(name)
        if name == "search":
            raise Boom("interrupted")

    pipe = Pipeline("lenet5", "fashion-mnist", 0.5, out, get_preset("tiny"), progress=False,
                    before_stage=fail_in_search)
    with pytest.raises(Boom):
        pipe.run()
    first = list(calls)
    stamps = {n: (out / "stages" / f"{n}.json").stat().st_mtime_ns for n in STAGES[:5]}
    ckpt = (out / "plain.pt").stat().st_mtime_ns
    calls.clear()
    pipe = Pipeline("lenet5", "fashion-mnist", 0.5, out, get_preset("tiny"), progress=False,
                    before_stage=calls.append)
    pipe.run()
    return {"out": out, "first": first, "second": list(calls), "stamps": stamps, "ckpt": ckpt}


def test_reproduce_resumes_after_interrupted_stage(tiny_run):
    out = tiny_run["out"]
    assert tiny_run["first"] == list(STAGES[:6])
    # the rerun starts at the stage that failed; finished ones are not rerun or rewritten
    assert tiny_run["second"] == list(STAGES[5:])
    for name, stamp in tiny_run["stamps"].items():
        assert (out / "stages" / f"{name}.json").stat().st_mtime_ns == stamp
    assert (out / "plain.pt").stat().st_mtime_ns == tiny_run["ckpt"]


def test_tiny_end_to_end_report(tiny_run):
    out = tiny_run["out"]
    report = json.loads((out / "report.json").read_text())
    for key in ("model", "dataset", "sigma", "samples", "clean_accuracy", "variants", "stages"):
        assert key in report
    assert report["samples"] == 3 and report["sigma"] == 0.5
    assert set(report["variants"]) == {"plain", "lipschitz", "variation_aware", "correctnet",
                                       "variation_aware_compensated", "digital_baseline",
                                       "digital_baseline_plain"}
    assert report["seeds"] == 2
    for v in report["variants"].values():
        assert 0.0 <= v["mean"] <= 1.0 and 0.0 <= v["std"] <= 1.0 and 0.0 <= v["clean"] <= 1.0
        assert len(v["seed_means"]) == 2
        assert v["mean"] == pytest.approx(sum(v["seed_means"]) / 2)
    cn = report["variants"]["correctnet"]
    assert 0.0 <= cn["overhead"] < 0.03 and cn["compensated_layers"] == len(cn["plan"])
    assert cn["base"] == "lipschitz"
    assert len(cn["training"]["loss"]) == 2
    assert (cn["training"]["steps"] > 0) == bool(cn["plan"])
    assert report["variants"]["variation_aware_compensated"]["base"] == "variation_aware"
    dig = report["variants"]["digital_baseline"]
    assert dig["base"] == "lipschitz" and dig["overhead"] <= cn["overhead"] + 1e-12
    assert {"lipschitz_vs_plain", "correctnet_vs_base", "correctnet_vs_digital_baseline"} <= set(
        report["comparisons"])
    assert report["comparisons"]["lipschitz_vs_plain"]["over"] == "seeds"
    t, v = report["targets"], report["variants"]
    assert t["correctnet_fraction"] == pytest.approx(cn["mean"] / v["plain"]["clean"])
    assert t["correctnet_minus_variation_aware"] == pytest.approx(
        cn["mean"] - v["variation_aware"]["mean"])
    cal = report["calibration"]
    assert set(cal) == {"plain", "lipschitz", "variation_aware"}
    for v, r in cal.items():
        assert r["uncalibrated_mean"] == pytest.approx(report["variants"][v]["seed_means"][0])
        assert r["difference"]["mean"] == pytest.approx(r["mean"] - r["uncalibrated_mean"])
    assert set(report["stages"]) == set(STAGES)
    assert all(s >= 0 for s in report["stages"].values())
    md = (out / "report.md").read_text()
    assert "CorrectNet (paper" in md and "lenet5" in md and "Paired comparisons" in md
    assert "Mean-gain calibration" in md and "Random search" in md
    assert "of the unregularized network's clean accuracy (the paper's claim: >= 95 %)" in md
    for fig in report["figures"].values():
        assert (out / fig).stat().st_size > 1000
    plans = json.loads((out / "plans.json").read_text())
    assert plans and all({"plan", "mean", "std"} <= set(e) for e in plans.values())


def test_report_cost_section(tiny_run):
    report = json.loads((tiny_run["out"] / "report.json").read_text())
    cost = report["cost"]
    assert cost["preset"] == "isaac-32nm" and cost["line_resistance"] == 0.0
    assert cost["weights_overhead"] == report["variants"]["correctnet"]["overhead"]
    net, comp, cn = cost["network"], cost["compensators"], cost["correctnet"]
    for key in ("energy_j", "latency_s", "area_mm2"):
        assert net[key] > 0
        assert cn[key] == pytest.approx(net[key] + comp[key])
        assert cost["overhead"][key] == pytest.approx(comp[key] / net[key])
    assert cn["analog"] == net["analog"]          # compensators add no crossbar work
    if report["variants"]["correctnet"]["plan"]:
        assert comp["macs"] > 0 and comp["layers"] and comp["energy_j"] > 0
    else:
        assert comp["macs"] == 0 and comp["energy_j"] == 0
    md = (tiny_run["out"] / "report.md").read_text()
    assert "Hardware cost per image (constants `isaac-32nm`" in md
    assert "compensation overhead %" in md and "CorrectNet compensators (digital path)" in md


def test_cli_rerun_reports_and_refuses_other_arguments(tiny_run, capsys):
    out = str(tiny_run["out"])
    assert main(["reproduce", "--preset", "tiny", "--out", out, "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "done earlier" in text and "CorrectNet (paper" in text
    assert main(["reproduce", "--preset", "tiny", "--sigma", "0.3", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "sigma" in err and "other arguments" in err
    with pytest.raises(RunConfigError, match="preset"):
        Pipeline("lenet5", "fashion-mnist", 0.5, out, get_preset("quick"))
    # --base changes the preset, so the finished run refuses it too
    other = "plain" if get_preset("tiny").base != "plain" else "lipschitz"
    assert main(["reproduce", "--preset", "tiny", "--base", other, "--out", out]) == 2
    assert "base" in capsys.readouterr().err


def test_compensators_stay_digital_after_mapping():
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    comp = insert_compensation(model, {"features.conv2": 1.0, "classifier.fc3": 0.5})
    analog = mapping.convert_to_crossbar(comp, XbarConfig.rram_lognormal(0.5))
    names = [n for n, _ in mapping.crossbar_layers(analog)]
    assert names == ["features.conv1", "features.conv2.base", "classifier.fc1",
                     "classifier.fc2", "classifier.fc3.base"]
    for name in ("features.conv2", "classifier.fc3"):
        wrapper = analog.get_submodule(name)
        assert isinstance(wrapper, CompensatedLayer)
        for part in (wrapper.generator, wrapper.compensator):
            assert mapping.is_digital(part)
            assert all(type(m) in (torch.nn.Conv2d, torch.nn.Linear, PointwiseConv)
                       or list(m.children())
                       for m in part.modules())
    # a fresh compensated network maps to the same function as the original one
    x = torch.randn(4, 1, 28, 28)
    plain = mapping.convert_to_crossbar(model, XbarConfig.rram_lognormal(0.5))
    mapping.program_ideal(plain)
    mapping.program_ideal(analog)
    with torch.no_grad():
        torch.testing.assert_close(analog(x), plain(x), rtol=1e-4, atol=1e-4)


def test_train_compensation_only_updates_compensators(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,),
                                                                       generator=gen))] * 3
    plan = {"features.conv2": 1.0}
    analog, hist = train_compensation(model, plan, data, XbarConfig.rram_lognormal(0.5),
                                      CompensationConfig(epochs=2, lr=1e-2))
    assert len(hist["loss"]) == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the input model is untouched
    base = analog.get_submodule("features.conv2.base")
    torch.testing.assert_close(base.weight.detach(), before["features.conv2.weight"])
    comp = analog.get_submodule("features.conv2.compensator.conv").weight
    assert not torch.allclose(comp[:, 16:], torch.zeros_like(comp[:, 16:]))
    # saved and reloaded compensation gives the same function
    path = save_compensation(tmp_path / "c.pt", analog, plan)
    again, payload = load_compensation(path, model)
    assert payload["plan"] == plan
    mapping.program_ideal(analog)
    x = data[0][0]
    with torch.no_grad():
        torch.testing.assert_close(again(x), analog(x), rtol=1e-4, atol=1e-4)


def test_vgg16_with_compensation_takes_a_training_step():
    torch.manual_seed(0)
    model = build_model("vgg16", in_channels=3, input_size=32).eval()
    plan = {"features.conv1_1": 0.5, "features.conv5_3": 0.25, "classifier.fc2": 1.0}
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([1, 7])
    analog, hist = train_compensation(model, plan, [(x, y)], XbarConfig.rram_lognormal(0.5),
                                      CompensationConfig(epochs=1))
    assert len(hist["loss"]) == 1 and hist["loss"][0] > 0
    w = analog.get_submodule("features.conv5_3.compensator.conv").weight
    assert w.shape == (512, 512 + 128, 1, 1)


def test_preset_validation():
    with pytest.raises(ValueError, match="preset.epochs"):
        Preset(name="x", epochs=0)
    with pytest.raises(ValueError, match="preset.limits"):
        Preset(name="x", limits=(0.0,))
    with pytest.raises(ValueError, match="preset.base"):
        Preset(name="x", base="nope")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    p = get_preset("quick")
    assert Preset.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    for bad in (-1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="preset.line_resistance"):
            Preset(name="x", line_resistance=bad)
    with pytest.raises(ValueError, match="preset.cost_preset.*isaac-32nm"):
        Preset(name="x", cost_preset="nope")
    # fields added later stay out of the stored config at their defaults (old runs resume)
    assert "line_resistance" not in p.to_dict() and "cost_preset" not in p.to_dict()
    wired = Preset(name="x", line_resistance=2.0, cost_preset="neurram-130nm")
    assert wired.to_dict()["line_resistance"] == 2.0
    assert Preset.from_dict(json.loads(json.dumps(wired.to_dict()))) == wired


def test_study_crossbar_is_rram_lognormal_and_line_resistance_reaches_monte_carlo(
        tmp_path, monkeypatch):
    from correctnet.study.context import StudyContext

    pipe = Pipeline("lenet5", "fashion-mnist", 0.5, tmp_path / "r", get_preset("tiny"),
                    progress=False)
    tile = get_preset("tiny").tile
    assert pipe.crossbar(0.5) == XbarConfig.rram_lognormal(0.5, n_rows=tile, n_cols=tile)
    assert (pipe.crossbar(0.1, 64, bits=8)
            == XbarConfig.rram_lognormal(0.1, n_rows=64, n_cols=64, dac_bits=8, adc_bits=8))
    assert pipe.crossbar(0.1, 64, line_resistance=2.0).tile.line_resistance == 2.0
    assert pipe.crossbar(0.1, 64).tile.line_resistance == 0.0
    seen = []
    real = StudyContext.crossbar

    def spy(self, *args, **kwargs):
        cfg = real(self, *args, **kwargs)
        seen.append(cfg.tile.line_resistance)
        return cfg

    monkeypatch.setattr(StudyContext, "crossbar", spy)
    res = pipe.monte_carlo(build_model("lenet5").eval(), sigma=0.0, samples=1, limit=8,
                           tile=32, line_resistance=2.0)
    assert seen == [2.0] and 0.0 <= res["mean"] <= 1.0


def test_ideal_execution_equals_torch_execution_on_a_compensated_network():
    torch.manual_seed(0)
    model = insert_compensation(build_model("lenet5").eval(), {"features.conv2": 1.0})
    analog = mapping.convert_to_crossbar(model, XbarConfig.rram_lognormal(0.5))
    mapping.set_execution(analog, "torch")
    mapping.resample(analog, torch.Generator().manual_seed(3))
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = analog(x)
        mapping.set_execution(analog, "ideal")
        assert set(mapping.executions(analog).values()) == {"ideal"}
        fast = analog(x)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


def test_cli_compensate_one_plan(tiny_run, tmp_path, capsys):
    ckpt = str(tiny_run["out"] / "lipschitz.pt")
    args = ["compensate", "--checkpoint", ckpt, "--epochs", "1", "--samples", "2",
            "--limit", "100", "--train-limit", "128"]
    assert main(args + ["--plan", "conv2=1,fc3=0.5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "overhead 2.48%" in out and "CorrectNet under sigma 0.5" in out
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["plan"] == {"features.conv2": 1.0, "classifier.fc3": 0.5}
    assert 0 <= result["mean"] <= 1 and result["overhead"] == pytest.approx(0.0248, abs=1e-4)
    assert (tmp_path / "compensation.pt").exists()
    assert main(args + ["--plan", "conv9=1"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main(args + ["--plan", "conv2"]) == 2
    assert "LAYER=RATIO" in capsys.readouterr().err


def test_report_has_lambda_and_per_layer_spectral_norms(tiny_run):
    from correctnet.training.lipschitz import lipschitz_lambda

    report = json.loads((tiny_run["out"] / "report.json").read_text())
    assert report["lambda"] == pytest.approx(lipschitz_lambda(report["sigma"]))
    names = None
    for variant in ("plain", "lipschitz", "variation_aware"):
        layers = report["variants"][variant]["layers"]
        names = names or list(layers)
        assert list(layers) == names and "features.conv1" in names
        for d in layers.values():
            assert set(d) == {"sigma_max", "sigma_min", "operator_norm", "binds"}
            assert d["sigma_max"] >= d["sigma_min"] > 0 and d["operator_norm"] > 0
            assert d["binds"] == (abs(d["sigma_max"] - report["lambda"]) <= 0.1 * report["lambda"])
    md = (tiny_run["out"] / "report.md").read_text()
    assert "## Spectral norms per layer" in md and "features.conv1" in md


def test_choose_plan_by_accuracy_reward_and_untrained_limits():
    from correctnet.study.compensation_stages import choose_plan

    a = {"plan": {"a": 1.0}, "mean": 0.80, "std": 0.05, "overhead": 0.01, "reward": 0.74}
    b = {"plan": {"b": 1.0}, "mean": 0.82, "std": 0.09, "overhead": 0.02, "reward": 0.71}
    c = {"plan": {"c": 1.0}, "mean": 0.82, "std": 0.01, "overhead": 0.03, "reward": 0.78}
    over = {"plan": {"d": 1.0}, "mean": None, "std": None, "overhead": 0.05, "reward": -0.05}
    assert choose_plan([a, b, c, over], "accuracy") is b      # ties: the smaller overhead
    assert choose_plan([a, b, c, over], "reward") is c
    assert choose_plan([over], "accuracy") is over            # nothing trained: the reward
