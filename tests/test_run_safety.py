"""Runs that cannot silently go wrong or lose work (issue 10, items 4, 5, 7, 10, 12-14)."""


from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from correctnet.cli import main
from correctnet.workloads.checkpoint import read_checkpoint
from correctnet.workloads.data import make_loader
from correctnet.errors import CheckpointError, TrainingError, UsageError
from correctnet.workloads.models import build_model
from correctnet.training.train import TrainConfig, train_model

META = dict(model="lenet5", dataset="fashion-mnist", num_classes=10, in_channels=1,
            input_size=28)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    return TensorDataset(x, y)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("lenet5")


def _train(data, path, cfg, *, resume=False, meta=META):
    return train_model(_model(), make_loader(data, 32, shuffle=True, seed=cfg.seed), None, cfg,
                       checkpoint_path=path, resume=resume, meta=meta, progress=False)


# ---------------------------------------------------------------- item 4: resume settings
@pytest.mark.parametrize("change", [dict(lr=1e-2), dict(seed=5), dict(batch_size=16),
                                    dict(sigma=0.3), dict(lr=1e-2, seed=5)])
def test_resume_with_other_settings_is_refused_naming_the_keys(data, tmp_path, change):
    path = tmp_path / "c.pt"
    base = dict(method="variation-aware", epochs=1, lr=1e-3, batch_size=32, sigma=0.5, seed=0)
    _train(data, path, TrainConfig(**base))
    with pytest.raises(CheckpointError) as err:
        _train(data, path, TrainConfig(**{**base, **change, "epochs": 2}), resume=True)
    msg = str(err.value)
    assert "\n" not in msg
    for key in change:
        assert f"--{key.replace('_', '-')} checkpoint" in msg
    assert all(f"--{k.replace('_', '-')} " not in msg for k in set(base) - set(change))
    assert read_checkpoint(path)["meta"]["epoch"] == 1   # nothing was trained or saved


def test_resume_with_more_epochs_is_allowed_and_other_limit_refused(data, tmp_path):
    path = tmp_path / "c.pt"
    cfg = TrainConfig(epochs=1, seed=0)
    _train(data, path, cfg, meta={**META, "limit": 96})
    hist = _train(data, path, TrainConfig(epochs=2, seed=0), resume=True,
                  meta={**META, "limit": 96})
    assert hist["epoch"] == [1, 2]
    with pytest.raises(CheckpointError, match=r"--limit checkpoint 96, given 50"):
        _train(data, path, TrainConfig(epochs=3, seed=0), resume=True,
               meta={**META, "limit": 50})


def test_cli_train_resume_with_other_lr_is_one_line(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["train", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args[:-2] + ["--lr", "0.01", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--lr checkpoint 0.001, given 0.01" in err


# ---------------------------------------------------------------- item 5: non-finite loss
def test_nan_loss_stops_training_without_saving(data, tmp_path):
    path = tmp_path / "c.pt"
    cfg = TrainConfig(method="variation-aware", sigma=20.0, epochs=1)  # exp(theta) overflows
    with pytest.raises(TrainingError, match=r"diverged in epoch 1: the loss is (nan|inf)"):
        _train(data, path, cfg)
    assert not path.exists()


def test_divergence_keeps_the_last_finite_checkpoint(data, tmp_path):
    path = tmp_path / "c.pt"
    _train(data, path, TrainConfig(epochs=1, optimizer="sgd", lr=1e-3))
    before = read_checkpoint(path)["state_dict"]
    with pytest.raises(TrainingError, match="the last good checkpoint .* is kept"):
        _train(data, path, TrainConfig(epochs=3, optimizer="sgd", lr=1e12), resume=False)
    after = read_checkpoint(path)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cli_train_nan_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "t"
    code = main(["train", "--method", "variation-aware", "--sigma", "20", "--epochs", "1",
                 "--limit", "64", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "diverged" in err
    assert not (out / "checkpoint.pt").exists()


def test_compensation_nan_loss_stops(data):
    from correctnet.compensation.train import CompensationConfig, train_compensation
    from xbar import XbarConfig

    with pytest.raises(TrainingError, match="compensation training diverged"):
        train_compensation(_model().eval(), {"classifier.fc3": 1.0},
                           make_loader(data, 8, shuffle=True),
                           XbarConfig.rram_lognormal(0.5), CompensationConfig(epochs=1, lr=1e30))


# ---------------------------------------------------------------- item 7: --out checked first
def _bad_outs(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {"a file": afile, "under a file": afile / "sub", "in /proc": Path("/proc/cn-x/y"),
            "in /sys": Path("/sys/cn-x")}


_COMMANDS = {
    "train": ["train", "--epochs", "1", "--limit", "64"],
    "sweep": ["sweep", "--checkpoint", "missing.pt", "--sigma", "0.5", "--tile", "64"],
    "compensate": ["compensate", "--checkpoint", "missing.pt", "--plan", "conv2=1"],
    "reproduce": ["reproduce", "--preset", "tiny"],
}


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_unusable_out_is_one_line_before_any_work(command, tmp_path, capsys):
    for what, out in _bad_outs(tmp_path).items():
        code = main(_COMMANDS[command] + ["--out", str(out)])
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert code == 2, (command, what, err)
        assert "\n" not in err and f"--out {out}: cannot create or write" in err, (what, err)
        assert "numba" not in captured.out and "epoch" not in captured.out  # no work started


def test_ensure_output_dir_creates_and_names_the_option(tmp_path):
    from correctnet.errors import UsageError
    from correctnet.fileio import ensure_output_dir

    assert ensure_output_dir(tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []      # the probe file is removed
    with pytest.raises(UsageError, match="--results .*a file of that name exists"):
        ensure_output_dir(_bad_outs(tmp_path)["a file"], "--results")


# ---------------------------------------------------------------- item 10: damaged run files
def test_corrupt_stage_file_names_itself_and_the_fix(tmp_path):
    from correctnet.study.pipeline import Pipeline
    from correctnet.study.presets import get_preset
    from correctnet.errors import UnreadableFileError

    pipe = Pipeline("lenet5", "fashion-mnist", 0.5, tmp_path / "run", get_preset("tiny"),
                    progress=False)
    stage = tmp_path / "run" / "stages" / "train_plain.json"
    stage.parent.mkdir()
    for content in ('{"seconds": 1.0, "res', '[1, 2]', '{"seconds": 1.0}'):
        stage.write_text(content)
        with pytest.raises(UnreadableFileError) as err:
            pipe.run(until="train_plain")
        assert str(stage) in str(err.value) and "delete it and rerun" in str(err.value)
    (tmp_path / "run" / "config.json").write_text("{not json")
    with pytest.raises(UnreadableFileError, match=r"run configuration .*config.json"):
        Pipeline("lenet5", "fashion-mnist", 0.5, tmp_path / "run", get_preset("tiny"))


@pytest.mark.parametrize("content", ["{\"a\": ", "[]", "{\"x=1\": {\"plan\": {}}}"])
def test_corrupt_plan_cache_names_itself(tmp_path, content):
    from correctnet.errors import UnreadableFileError
    from correctnet.search.cache import PlanCache

    path = tmp_path / "plans.json"
    path.write_text(content)
    with pytest.raises(UnreadableFileError, match=r"plan cache .*plans.json .*delete it"):
        PlanCache(path)


def test_foreign_sweep_db_is_refused_with_what_to_do(tmp_path):
    import sqlite3

    from correctnet.sweep.store import SweepStore, SweepStoreError

    foreign = tmp_path / "foreign" / "sweep.db"
    foreign.parent.mkdir()
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE points (a INTEGER, b TEXT)")
    con.commit()
    con.close()
    with pytest.raises(SweepStoreError, match=r"another kind .*lacks .*move it away"):
        SweepStore(foreign)
    garbage = tmp_path / "garbage" / "sweep.db"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(SweepStoreError, match="move it away"):
        SweepStore(garbage)


# ---------------------------------------------------------------- item 12: config differences
def test_reproduce_with_other_base_names_only_the_differing_key(tmp_path, capsys):
    from correctnet.study.pipeline import Pipeline
    from correctnet.study.presets import get_preset

    out = tmp_path / "run"
    Pipeline("lenet5", "fashion-mnist", 0.5, out, get_preset("tiny"))   # writes config.json
    assert main(["reproduce", "--preset", "tiny", "--base", "plain", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "preset.base: stored 'lipschitz', given 'plain'" in err
    assert "preset.epochs" not in err and len(err) < 300
    assert main(["reproduce", "--preset", "quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "preset.name: stored 'tiny', given 'quick'" in err and "more" in err
    assert "\n" not in err and len(err) < 600


# ---------------------------------------------------------------- item 13: checkpoint mistakes
def test_folder_as_checkpoint_points_at_the_file_inside(tmp_path):
    from correctnet.workloads.checkpoint import load_checkpoint, save_checkpoint

    with pytest.raises(CheckpointError, match=r"is a folder; .*e\.g\. .*checkpoint\.pt"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path / "checkpoint.pt", _model(), META)
    with pytest.raises(CheckpointError, match=r"is a folder; .*one of .*checkpoint\.pt"):
        load_checkpoint(tmp_path)


def test_architecture_mismatch_says_what_does_not_fit(tmp_path):
    from correctnet.workloads.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "c.pt"
    save_checkpoint(path, build_model("lenet5", in_channels=3, input_size=32), META)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "size mismatch for features.conv1.weight" in msg and "\n" not in msg
    assert "Error(s) in loading" not in msg


def test_compensation_file_given_to_simulate_says_how_to_evaluate_it(tmp_path, capsys):
    from correctnet.compensation.modules import insert_compensation
    from correctnet.compensation.train import save_compensation

    path = tmp_path / "correctnet.pt"
    plan = {"classifier.fc3": 1.0}
    save_compensation(path, insert_compensation(_model(), plan), plan)
    assert main(["simulate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "compensators, not a network" in err and "load_compensation" in err
    assert "reproduce" in err


# ---------------------------------------------------------------- item 14: small traps
def test_ctrl_c_in_train_says_resume(monkeypatch, tmp_path, capsys):
    import correctnet.commands.train as train_cmd

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cmd, "run", interrupted)
    assert main(["train", "--out", str(tmp_path)]) == 130
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["compensate", "reproduce"])
def test_negative_threads_refused(command, tmp_path, capsys):
    args = {"compensate": ["compensate", "--checkpoint", "c.pt", "--plan", "conv2=1"],
            "reproduce": ["reproduce", "--out", str(tmp_path)]}[command]
    with pytest.raises(SystemExit) as exc:
        main(args + ["--threads", "-2"])
    assert exc.value.code == 2 and "--threads" in capsys.readouterr().err


def test_duplicate_plan_entry_refused():
    from correctnet.commands.compensate import resolve_plan
    from correctnet.compensation.modules import PlanError
    from correctnet.compensation.plan import parse_plan

    with pytest.raises(PlanError, match="'conv2' twice"):
        parse_plan("conv2=1,conv2=0.5")
    with pytest.raises(PlanError, match="'features.conv2' twice"):
        resolve_plan("conv2=1,features.conv2=0.5", ["features.conv1", "features.conv2"])


def test_identical_checkpoints_in_a_sweep_are_refused(tmp_path):
    from correctnet.workloads.checkpoint import save_checkpoint
    from correctnet.sweep.run import run_sweep
    from correctnet.errors import UsageError

    a = save_checkpoint(tmp_path / "a" / "checkpoint.pt", _model(), META)
    b = tmp_path / "b.pt"
    b.write_bytes(a.read_bytes())
    with pytest.raises(UsageError, match=r"identical contents .*give it once"):
        run_sweep([a, b], [0.5], [64], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "sweep.db").exists()


def test_reproduce_seeds_and_plan_choice_are_checked_and_recorded(tmp_path, capsys):
    from correctnet.study.pipeline import Pipeline
    from correctnet.study.presets import Preset, get_preset

    out = tmp_path / "run"
    for bad in (["--seeds", "0"], ["--seeds", "two"], ["--plan-choice", "best"]):
        with pytest.raises(SystemExit) as exc:
            main(["reproduce", "--preset", "tiny", *bad, "--out", str(out)])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert bad[0] in err and "\n" not in err.strip()
    Pipeline("lenet5", "fashion-mnist", 0.5, out, get_preset("tiny"))   # seeds 2 stored
    assert main(["reproduce", "--preset", "tiny", "--seeds", "3", "--out", str(out)]) == 2
    assert "preset.seeds: stored 2, given 3" in capsys.readouterr().err
    with pytest.raises(UsageError, match="plan_choice"):
        Preset(name="x", plan_choice="best")
    with pytest.raises(UsageError, match="digital_samples"):
        Preset(name="x", digital_samples=0)
