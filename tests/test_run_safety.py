"""Runs that cannot silently go wrong or lose work (issue 10, items 4, 5, 7, 10, 12-14)."""


import pytest
import torch
from torch.utils.data import TensorDataset

from correctnet.cli import main
from correctnet.checkpoint import read_checkpoint
from correctnet.data import make_loader
from correctnet.errors import CheckpointError, TrainingError
from correctnet.models import build_model
from correctnet.training import TrainConfig, train_model

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
    from correctnet.compensation_training import CompensationConfig, train_compensation
    from correctnet.pipeline import xbar_config

    pytest.importorskip("mapping")
    with pytest.raises(TrainingError, match="compensation training diverged"):
        train_compensation(_model().eval(), {"classifier.fc3": 1.0},
                           make_loader(data, 8, shuffle=True),
                           xbar_config(0.5), CompensationConfig(epochs=1, lr=1e30))
