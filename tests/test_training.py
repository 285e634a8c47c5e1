import pytest
import torch
from torch import nn

from correctnet.workloads.checkpoint import load_checkpoint, read_checkpoint
from correctnet.workloads.data import load_dataset, make_loader
from correctnet.errors import CheckpointError, UsageError
from correctnet.workloads.models import build_model
from correctnet.training.resume import epoch_checkpoint_path
from correctnet.training.train import TrainConfig, perturbed_weights, train_model
from mapping import evaluate_accuracy as evaluate


META = dict(model="lenet5", dataset="fashion-mnist", num_classes=10, in_channels=1,
            input_size=28)


@pytest.fixture(scope="module")
def loaders():
    train = load_dataset("fashion-mnist", "train", limit=512)
    test = load_dataset("fashion-mnist", "test", limit=256)
    return train, make_loader(test, 256)


def _fresh(seed=0):
    torch.manual_seed(seed)
    return build_model("lenet5")


def test_trainconfig_validation():
    assert TrainConfig(method="lipschitz", sigma=0.5).lam == pytest.approx(0.3396, abs=1e-4)
    for kwargs, field in [({"method": "magic"}, "method"), ({"epochs": 0}, "epochs"),
                          ({"lr": 0.0}, "lr"), ({"sigma": -0.5}, "sigma"),
                          ({"beta": -1.0}, "beta"), ({"optimizer": "rmsprop"}, "optimizer"),
                          ({"batch_size": 0}, "batch_size"), ({"k": 0.0}, "k"),
                          ({"output_scale": 0.0}, "output_scale")]:
        with pytest.raises(UsageError, match=f"train.{field}"):
            TrainConfig(**kwargs)
    with pytest.raises(ValueError):  # UsageError is also a ValueError
        TrainConfig(epochs=-1)


def test_plain_training_learns_and_checkpoints(tmp_path, loaders):
    train, test = loaders
    model = _fresh()
    before = evaluate(model, test)
    path = tmp_path / "checkpoint.pt"
    hist = train_model(model, make_loader(train, 64, shuffle=True, seed=0), test,
                       TrainConfig(epochs=2, lr=2e-3), checkpoint_path=path, meta=META,
                       progress=False)
    assert hist["epoch"] == [1, 2]
    assert hist["test_accuracy"][-1] > max(before, 0.4)
    assert hist["train_loss"][1] < hist["train_loss"][0]
    assert epoch_checkpoint_path(path, 1).is_file() and epoch_checkpoint_path(path, 2).is_file()
    loaded, meta = load_checkpoint(path, expect_model="lenet5")
    assert meta["epoch"] == 2 and meta["method"] == "plain"
    assert meta["test_accuracy"] == pytest.approx(hist["test_accuracy"][-1])
    assert evaluate(loaded, test) == pytest.approx(hist["test_accuracy"][-1])
    assert read_checkpoint(path)["optimizer_state"] is not None


def test_resume_equals_uninterrupted(tmp_path, loaders):
    train, test = loaders
    cfg2 = TrainConfig(epochs=2, method="variation-aware", sigma=0.5, seed=3)
    full = _fresh()
    train_model(full, make_loader(train, 64, shuffle=True, seed=0), test, cfg2,
                checkpoint_path=tmp_path / "a.pt", meta=META, progress=False)
    part = _fresh()
    train_model(part, make_loader(train, 64, shuffle=True, seed=0), test,
                TrainConfig(epochs=1, method="variation-aware", sigma=0.5, seed=3),
                checkpoint_path=tmp_path / "b.pt", meta=META, progress=False)
    resumed = _fresh(seed=99)  # different init: everything must come from the checkpoint
    hist = train_model(resumed, make_loader(train, 64, shuffle=True, seed=0), test, cfg2,
                       checkpoint_path=tmp_path / "b.pt", resume=True, meta=META,
                       progress=False)
    assert hist["epoch"] == [1, 2]
    for p_full, p_res in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(p_full, p_res, rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="method"):
        train_model(_fresh(), make_loader(train, 64), test, TrainConfig(epochs=3),
                    checkpoint_path=tmp_path / "b.pt", resume=True, meta=META,
                    progress=False)


def test_lipschitz_logs_norms_and_shrinks_them(loaders):
    train, test = loaders
    loader = make_loader(train, 64, shuffle=True, seed=0)
    plain = _fresh()
    train_model(plain, loader, None, TrainConfig(epochs=1), progress=False)
    lip = _fresh()
    hist = train_model(lip, loader, test, TrainConfig(method="lipschitz", epochs=1, beta=0.05),
                       progress=False)
    norms = hist["spectral_norms"][-1]
    assert set(norms) == {"features.conv1", "features.conv2", "classifier.fc1",
                          "classifier.fc2", "classifier.fc3"}
    assert hist["penalty"][0] > 0
    from correctnet.training.lipschitz import spectral_norms
    assert max(norms.values()) < max(spectral_norms(plain).values())


def test_variation_aware_perturbation_statistics_and_gradient():
    layer = nn.Linear(200, 100)
    with torch.no_grad():
        layer.weight.fill_(0.5)
    gen = torch.Generator().manual_seed(0)
    out = perturbed_weights(layer, 0.5, gen)["weight"]
    log_ratio = torch.log(out.detach() / 0.5)
    assert abs(float(log_ratio.std()) - 0.5) < 0.02  # 20k samples: std error ~0.0025
    assert abs(float(log_ratio.mean())) < 0.02
    out.sum().backward()
    torch.testing.assert_close(layer.weight.grad, (out.detach() / 0.5))
    assert torch.equal(perturbed_weights(layer, 0.0)["weight"], layer.weight)


def test_learned_output_scale_and_extra_modules(loaders):
    train, _ = loaders
    model = _fresh()
    extra = nn.Linear(1, 1)
    before = extra.weight.detach().clone()
    hist = train_model(model, make_loader(train, 64), None,
                       TrainConfig(epochs=1, method="lipschitz", output_scale=3.0,
                                   learn_output_scale=True),
                       extra_modules=[extra], progress=False)
    assert hist["test_accuracy"] == [None]
    assert model.output_scale.learnable and model.output_scale.value != pytest.approx(3.0)
    assert torch.equal(extra.weight, before)  # no gradient reaches it, but it is accepted


def test_cuda_request_without_cuda(loaders):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    train, _ = loaders
    with pytest.raises(UsageError, match="CUDA"):
        train_model(_fresh(), make_loader(train, 64), None, TrainConfig(epochs=1),
                    device="cuda", progress=False)
