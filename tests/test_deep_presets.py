"""The deep and paper presets parse and validate; a tiny-width VGG16 reproduce runs end to end."""

import dataclasses
import json

import pytest

from correctnet.workloads.checkpoint import load_checkpoint
from correctnet.cli import main
from correctnet.study.pipeline import Pipeline
from correctnet.study.presets import PRESET_NAMES, Preset, get_preset


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_round_trips(name):
    p = get_preset(name)
    assert Preset.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_deep_and_paper_presets_hold_the_study_settings():
    deep, paper = get_preset("deep"), get_preset("paper")
    assert deep.width == 0.125 and paper.width == 1.0
    for p in (deep, paper):
        assert p.samples == 250 and p.test_limit is None and p.base == "lipschitz"
        assert p.ratios == (0.0, 0.25, 0.5, 1.0, 2.0) and p.limits == (0.01, 0.02, 0.03)
        assert p.va_warm_start and p.va_sigma_ramp_epochs > 0 and p.va_bn_stats != "batch"
        assert p.random_search_plans is None and p.exhaustive_max_plans == 0
    # the quick preset keeps its stored form (its run folders resume, its numbers stay)
    stored = get_preset("quick").to_dict()
    for field in ("width", "va_warm_start", "va_lr", "va_sigma_ramp_epochs", "va_bn_stats",
                  "random_search_plans"):
        assert field not in stored


@pytest.mark.parametrize("field,value", [("width", 0.3), ("width", True), ("va_lr", 0.0),
                                         ("va_sigma_ramp_epochs", -1.0), ("va_bn_stats", "x"),
                                         ("random_search_plans", -1), ("va_warm_start", 1)])
def test_new_preset_fields_are_validated(field, value):
    with pytest.raises(ValueError, match=f"preset.{field}"):
        Preset(name="x", **{field: value})


def test_reproduce_width_errors_are_one_line(tmp_path, capsys):
    assert main(["reproduce", "--model", "lenet5", "--preset", "deep",
                 "--out", str(tmp_path / "a")]) == 2
    assert "lenet5 has no width multiplier" in capsys.readouterr().err
    assert main(["reproduce", "--model", "vgg16_bn", "--width", "0.2", "--preset", "tiny",
                 "--out", str(tmp_path / "b")]) == 2
    assert "width must be one of" in capsys.readouterr().err


def test_tiny_width_vgg_reproduce_end_to_end(tmp_path):
    preset = dataclasses.replace(get_preset("tiny"), width=0.0625, sweep_sigmas=(0.5,), seeds=1,
                                 candidate_test_limit=50, search_test_limit=50)
    out = tmp_path / "run"
    results = Pipeline("vgg16_bn", "fashion-mnist", 0.5, out, preset, progress=False).run()
    for variant in ("plain", "lipschitz", "variation_aware"):
        model, meta = load_checkpoint(out / f"{variant}.pt")
        assert meta["width"] == 0.0625 and model.features.conv1_1.out_channels == 4
    curve = results["candidates"]["curves"]["lipschitz"]
    assert len(curve["layers"]) == 16       # 13 convs + fc1, fc2, fc3: Fig. 9 over all 16
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "vgg16_bn" and report["preset"]["width"] == 0.0625
