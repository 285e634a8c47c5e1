"""Lipschitz training with --constraint soft|hard: penalty used, retraction held, diagnostics."""

import pytest
import torch

from correctnet.workloads.checkpoint import read_checkpoint
from correctnet.cli import main
from correctnet.workloads.data import load_dataset, make_loader
from correctnet.errors import CheckpointError, UsageError
from correctnet.training.lipschitz import normalized_penalty
from correctnet.workloads.models import build_model
from correctnet.training.train import TrainConfig, train_model

META = dict(model="lenet5", dataset="fashion-mnist", num_classes=10, in_channels=1,
            input_size=28)
LAYERS = ["features.conv1", "features.conv2", "classifier.fc1", "classifier.fc2",
          "classifier.fc3"]


@pytest.fixture(scope="module")
def train_loader():
    return make_loader(load_dataset("fashion-mnist", "train", limit=256), 64, shuffle=True)


def _fresh():
    torch.manual_seed(0)
    return build_model("lenet5")


def test_constraint_validation():
    assert TrainConfig().constraint == "soft" and TrainConfig().beta == 0.1
    with pytest.raises(UsageError, match="train.constraint"):
        TrainConfig(method="lipschitz", constraint="exact")


def test_soft_uses_the_normalized_penalty(train_loader):
    model = _fresh()
    lam = TrainConfig(method="lipschitz").lam
    want = float(normalized_penalty(model, lam).detach())
    hist = train_model(model, train_loader, None,
                       TrainConfig(method="lipschitz", epochs=1, lr=1e-12, beta=0.1),
                       progress=False)
    assert hist["penalty"][0] == pytest.approx(want, rel=1e-4)


def test_soft_with_large_beta_pulls_every_layer_towards_lambda(train_loader):
    hist = {}
    for beta in (0.0, 10.0):
        hist[beta] = train_model(_fresh(), train_loader, None,
                                 TrainConfig(method="lipschitz", epochs=1, lr=3e-3, beta=beta),
                                 progress=False)
    lam = hist[0.0]["lambda"]
    for name in LAYERS:
        gap = {b: abs(h["diagnostics"][-1][name]["sigma_max"] - lam) for b, h in hist.items()}
        assert gap[10.0] < gap[0.0], name


def test_hard_holds_every_singular_value_at_lambda(train_loader, tmp_path):
    path = tmp_path / "hard.pt"
    hist = train_model(_fresh(), train_loader, None,
                       TrainConfig(method="lipschitz", constraint="hard", epochs=1,
                                   learn_output_scale=True),
                       checkpoint_path=path, meta=META, progress=False)
    lam = hist["lambda"]
    diag = hist["diagnostics"][-1]
    assert list(diag) == LAYERS
    for name, d in diag.items():
        assert d["sigma_max"] == pytest.approx(lam, rel=1e-4), name
        assert d["sigma_min"] == pytest.approx(lam, rel=1e-4), name
        assert d["binds"] and d["condition"] == pytest.approx(1.0, rel=1e-3)
    # the convolutions' true gain is larger than the flattened matrix's
    assert diag["features.conv1"]["operator_norm"] > 1.5 * lam
    meta = read_checkpoint(path)["meta"]
    assert meta["diagnostics"] == diag and meta["train_config"]["constraint"] == "hard"
    with pytest.raises(CheckpointError, match="constraint 'hard'"):
        train_model(_fresh(), train_loader, None,
                    TrainConfig(method="lipschitz", constraint="soft", epochs=2,
                                learn_output_scale=True),
                    checkpoint_path=path, resume=True, meta=META, progress=False)


def test_plain_has_no_diagnostics(train_loader):
    hist = train_model(_fresh(), train_loader, None, TrainConfig(epochs=1), progress=False)
    assert hist["diagnostics"] == [None]


def test_cli_constraint_errors_and_per_epoch_line(tmp_path, capsys):
    base = ["train", "--epochs", "1", "--limit", "128", "--batch-size", "64"]
    assert main([*base, "--constraint", "hard", "--out", str(tmp_path / "a")]) == 2
    assert "--method lipschitz only" in capsys.readouterr().err
    assert main([*base, "--beta", "0.1", "--out", str(tmp_path / "b")]) == 2
    assert "--method lipschitz only" in capsys.readouterr().err
    assert main([*base, "--method", "lipschitz", "--constraint", "hard", "--beta", "1",
                 "--out", str(tmp_path / "c")]) == 2
    assert "--constraint hard has none" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--method", "lipschitz", "--constraint", "exact", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([*base, "--method", "lipschitz", "--constraint", "hard",
                 "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("sigma_max/sigma_min"))
    assert "lambda 0.340" in line and line.count(" B") == 5 and "conv1 0.340/0.340 op" in line
    meta = read_checkpoint(tmp_path / "d" / "checkpoint.pt")["meta"]
    assert meta["beta"] == 0.1 and set(meta["diagnostics"]) == set(LAYERS)
