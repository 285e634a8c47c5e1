"""VGG16 width multiplier, parameter / MAC counts, checkpoints and the CLI at a tiny width."""

import json

import pytest
import torch
from torch import nn

from correctnet.workloads.checkpoint import load_checkpoint, save_checkpoint
from correctnet.cli import main
from correctnet.errors import CheckpointError, UsageError
from correctnet.workloads.models import (
    VGG_WIDTHS,
    build_model,
    check_width,
    count_macs,
    count_parameters,
)

CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def _naive_vgg_counts(width, in_channels=1, classes=10):
    """Parameters and MACs of VGG16_bn at ``width`` on a 32x32 input, written out by hand."""
    params = macs = 0
    cin, side, pools_after = in_channels, 32, {1, 3, 6, 9, 12}
    for i, c in enumerate(CHANNELS):
        c = int(width * c)
        params += cin * c * 9 + c + 2 * c          # conv weight + bias, batch-norm affine
        macs += side * side * cin * c * 9
        cin = c
        if i in pools_after:
            side //= 2
    hidden = int(512 * width)
    params += cin * hidden + hidden + hidden * hidden + hidden + hidden * classes + classes
    macs += cin * hidden + hidden * hidden + hidden * classes
    return params, macs


@pytest.mark.parametrize("width", VGG_WIDTHS)
def test_vgg_width_layout_and_counts(width):
    model = build_model("vgg16_bn", width=width)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [int(width * c) for c in CHANNELS]
    assert model.classifier.fc1.out_features == int(512 * width)
    assert model.classifier.fc1.in_features == int(512 * width)
    assert (model.classifier.fc2.in_features, model.classifier.fc2.out_features,
            model.classifier.fc3.in_features) == (int(512 * width),) * 3
    assert len([m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]) == 16
    params, macs = _naive_vgg_counts(width)
    assert count_parameters(model) == params
    assert count_macs(model, (1, 28, 28)) == macs     # 28x28 zero-padded to 32x32
    assert model.features.pad.padding == (2, 2, 2, 2)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_width_one_is_the_original_vgg16():
    a, b = build_model("vgg16", in_channels=3, input_size=32), build_model(
        "vgg16", in_channels=3, input_size=32, width=1.0)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


@pytest.mark.parametrize("name,width", [("vgg16", 0.3), ("vgg16_bn", 2.0), ("vgg16", 0.0),
                                        ("lenet5", 0.5), ("vgg16", "1/8")])
def test_bad_width_is_refused(name, width):
    with pytest.raises(UsageError, match="width"):
        build_model(name, width=width)


def test_check_width_snaps_to_the_listed_value():
    assert check_width("vgg16_bn", 1 / 8) == 0.125 and check_width("lenet5", 1) == 1.0


def test_checkpoint_rebuilds_width(tmp_path):
    model = build_model("vgg16_bn", width=1 / 16)
    meta = dict(model="vgg16_bn", num_classes=10, in_channels=1, input_size=28, width=0.0625)
    save_checkpoint(tmp_path / "c.pt", model, meta)
    loaded, got = load_checkpoint(tmp_path / "c.pt")
    assert got["width"] == 0.0625
    assert loaded.features.conv1_1.out_channels == 4
    bad = dict(meta, width=0.3)
    save_checkpoint(tmp_path / "bad.pt", model, bad)
    with pytest.raises(CheckpointError, match="width"):
        load_checkpoint(tmp_path / "bad.pt")
    # a checkpoint without a width key is width 1 (older files); these weights do not fit it
    save_checkpoint(tmp_path / "old.pt", model, {k: v for k, v in meta.items() if k != "width"})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(tmp_path / "old.pt")


def test_cli_train_and_simulate_tiny_vgg(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["train", "--model", "vgg16_bn", "--width", "0.0625", "--epochs", "1",
                 "--limit", "64", "--batch-size", "32", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    ckpt = out / "checkpoint.pt"
    _, meta = load_checkpoint(ckpt)
    assert meta["width"] == 0.0625 and meta["model"] == "vgg16_bn"
    assert main(["simulate", "--checkpoint", str(ckpt), "--width", "0.0625", "--samples", "2",
                 "--limit", "64", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["width"] == 0.0625 and len(res["accuracies"]) == 2
    assert main(["simulate", "--checkpoint", str(ckpt), "--width", "0.125", "--samples", "1",
                 "--limit", "64"]) == 2
    assert "width 0.0625, not --width 0.125" in capsys.readouterr().err
    # resume with another width is refused with one line
    assert main(["train", "--model", "vgg16_bn", "--width", "0.125", "--epochs", "2",
                 "--limit", "64", "--out", str(out), "--resume"]) == 2
    assert "width" in capsys.readouterr().err
    assert main(["train", "--model", "lenet5", "--width", "0.5", "--epochs", "1",
                 "--out", str(tmp_path / "l")]) == 2
    assert "lenet5 has no width multiplier" in capsys.readouterr().err
