"""Batch-norm recalibration and variation-aware training for deep batch-norm networks."""

import numpy as np
import pytest
import torch
from torch import nn

import naive
from correctnet.training.batchnorm import batchnorm_layers, freeze_batchnorm, recalibrate_batchnorm
from correctnet.workloads.checkpoint import load_checkpoint
from correctnet.workloads.data import load_dataset, make_loader
from correctnet.errors import CheckpointError, UsageError
from correctnet.workloads.models import build_model
from correctnet.training import TrainConfig, perturbed_weights, train_model


def _conv_bn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU())


def _batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 2, 6, 6, generator=g), torch.zeros(5)) for _ in range(n)]


def test_recalibrate_clean_matches_oracle_and_restores_modes():
    model = _conv_bn().train()
    bn = model[1]
    bn.momentum = 0.3
    data = _batches()
    assert recalibrate_batchnorm(model, data, batches=3) == 3
    with torch.no_grad():
        acts = [model[0](x).numpy() for x, _ in data[:3]]
    mean, var = naive.batchnorm_cumulative_stats(acts)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.3 and model.training and bn.training


def test_recalibrate_noisy_uses_one_fresh_sample_per_batch():
    model = _conv_bn().eval()
    data = _batches()
    gen = torch.Generator().manual_seed(5)
    recalibrate_batchnorm(model, data, batches=4, sigma=0.5, generator=gen)
    bn = model[1]
    gen = torch.Generator().manual_seed(5)
    acts = []
    with torch.no_grad():
        for x, _ in data:
            w = perturbed_weights(model, 0.5, gen)["0.weight"]
            acts.append(nn.functional.conv2d(x, w, model[0].bias).numpy())
    mean, var = naive.batchnorm_cumulative_stats(acts)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-5, atol=1e-6)
    assert not model.training and not bn.training
    # noise-free statistics differ
    clean = _conv_bn()
    recalibrate_batchnorm(clean, data, batches=4)
    assert not torch.allclose(clean[1].running_var, bn.running_var)


def test_recalibrate_errors_and_no_batchnorm():
    model = _conv_bn()
    with pytest.raises(ValueError, match="batches must be"):
        recalibrate_batchnorm(model, _batches(), batches=0)
    with pytest.raises(ValueError, match="sigma must be"):
        recalibrate_batchnorm(model, _batches(), batches=1, sigma=-1.0)
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_batchnorm(model, [], batches=1)
    assert recalibrate_batchnorm(nn.Sequential(nn.Linear(2, 2)), [], batches=1) == 0


def test_freeze_batchnorm():
    model = _conv_bn().train()
    assert freeze_batchnorm(model) == 1 and model.training and not model[1].training
    assert batchnorm_layers(model) == [model[1]]


def test_trainconfig_va_options_validation():
    cfg = TrainConfig(method="variation-aware", sigma=0.5, sigma_ramp_epochs=2.0)
    assert cfg.sigma_at(0) == 0.0 and cfg.sigma_at(1) == 0.25 and cfg.sigma_at(5) == 0.5
    assert TrainConfig(method="variation-aware", sigma=0.5).sigma_at(0) == 0.5
    with pytest.raises(UsageError, match="train.bn_stats"):
        TrainConfig(method="variation-aware", bn_stats="running")
    with pytest.raises(UsageError, match="variation-aware only"):
        TrainConfig(method="plain", bn_stats="clean")
    with pytest.raises(UsageError, match="variation-aware only"):
        TrainConfig(method="lipschitz", sigma_ramp_epochs=1.0)
    with pytest.raises(UsageError, match="sigma_ramp_epochs"):
        TrainConfig(method="variation-aware", sigma_ramp_epochs=-1.0)
    with pytest.raises(UsageError, match="bn_calibration_batches"):
        TrainConfig(method="variation-aware", bn_stats="clean", bn_calibration_batches=0)
    # defaults are not stored, so checkpoints of before these fields keep their train_config
    assert "bn_stats" not in TrainConfig().to_dict()
    assert TrainConfig(method="variation-aware", bn_stats="noisy").to_dict()["bn_stats"] == "noisy"


META = dict(model="vgg16_bn", dataset="fashion-mnist", num_classes=10, in_channels=1,
            input_size=28, width=0.0625)


@pytest.fixture(scope="module")
def tiny_data():
    train = load_dataset("fashion-mnist", "train", limit=96)
    return train, make_loader(load_dataset("fashion-mnist", "test", limit=64), 64)


def _vgg():
    torch.manual_seed(0)
    return build_model("vgg16_bn", width=0.0625)


@pytest.fixture(scope="module")
def plain_ckpt(tmp_path_factory, tiny_data):
    train, test = tiny_data
    path = tmp_path_factory.mktemp("plain") / "plain.pt"
    train_model(_vgg(), make_loader(train, 32, shuffle=True, seed=0), test,
                TrainConfig(epochs=1, keep_epoch_checkpoints=False), checkpoint_path=path,
                progress=False, meta=META)
    return path


@pytest.mark.parametrize("bn_stats", ["clean", "noisy"])
def test_va_warm_start_ramp_and_chip_batchnorm_resume_exactly(tmp_path, tiny_data, plain_ckpt,
                                                               bn_stats):
    train, test = tiny_data
    cfg = TrainConfig(method="variation-aware", epochs=2, lr=3e-4, sigma=0.5,
                      init_checkpoint=str(plain_ckpt), sigma_ramp_epochs=1.0,
                      bn_stats=bn_stats, bn_calibration_batches=2,
                      keep_epoch_checkpoints=False)

    def run(path, epochs, resume=False):
        c = TrainConfig(**{**cfg.__dict__, "epochs": epochs})
        return train_model(_vgg(), make_loader(train, 32, shuffle=True, seed=0), test, c,
                           checkpoint_path=path, resume=resume, progress=False, meta=META)

    hist = run(tmp_path / "a.pt", 2)
    assert hist["sigma"] == [0.5, 0.5]
    run(tmp_path / "b.pt", 1)
    run(tmp_path / "b.pt", 2, resume=True)
    a, _ = load_checkpoint(tmp_path / "a.pt")
    b, _ = load_checkpoint(tmp_path / "b.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    # the warm start came from the plain network, and the statistics were recalibrated
    plain, _ = load_checkpoint(plain_ckpt)
    assert not torch.equal(a.features.bn1_1.running_var, plain.features.bn1_1.running_var)
    assert int(a.features.bn1_1.num_batches_tracked) == 2


def test_va_clean_stats_equal_a_clean_recalibration(tmp_path, tiny_data, plain_ckpt):
    train, test = tiny_data
    loader = make_loader(train, 32, shuffle=True, seed=0)
    cfg = TrainConfig(method="variation-aware", epochs=1, sigma=0.5, bn_stats="clean",
                      init_checkpoint=str(plain_ckpt), bn_calibration_batches=3,
                      keep_epoch_checkpoints=False)
    train_model(_vgg(), loader, None, cfg, checkpoint_path=tmp_path / "c.pt",
                progress=False, meta=META)
    model, _ = load_checkpoint(tmp_path / "c.pt")
    before = model.features.bn1_1.running_mean.clone()
    # all 96 images in any order: the first layer's mean is the same (later layers' inputs
    # depend on the batches' composition, normalised by batch statistics)
    recalibrate_batchnorm(model, loader, batches=3)
    torch.testing.assert_close(model.features.bn1_1.running_mean, before, rtol=1e-4, atol=1e-5)


def test_warm_start_refuses_another_model(tmp_path, tiny_data, plain_ckpt):
    train, _ = tiny_data
    cfg = TrainConfig(method="variation-aware", epochs=1, init_checkpoint=str(plain_ckpt))
    with pytest.raises(CheckpointError, match="warm-start"):
        train_model(build_model("vgg16_bn", width=0.125), make_loader(train, 32), None, cfg,
                    progress=False, meta=dict(META, width=0.125))
    with pytest.raises(CheckpointError, match="warm-start"):
        train_model(build_model("lenet5"), make_loader(train, 32), None, cfg, progress=False,
                    meta={"model": "lenet5"})
