import gzip
import os

import numpy as np
import pytest
import torch

from correctnet.workloads.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from correctnet.workloads.data import DATASET_NAMES, dataset_info, load_dataset, make_loader
from correctnet.errors import CheckpointError, DatasetError, UsageError
from correctnet.workloads.models import MODEL_NAMES, build_model, output_scale_of, set_output_scale



@pytest.mark.parametrize("name,channels,size", [
    ("lenet5", 1, 28), ("lenet5", 3, 32), ("vgg16", 3, 32), ("vgg16_bn", 3, 32),
    ("vgg16", 1, 28), ("vgg16_bn", 1, 28), ("vgg16", 3, 40)])
def test_models_forward_shapes(name, channels, size):
    model = build_model(name, num_classes=7, in_channels=channels, input_size=size)
    model.eval()
    out = model(torch.randn(1, channels, size, size))
    assert out.shape == (1, 7)
    names = dict(model.named_modules())
    assert "features" in names and "classifier" in names


def test_lenet5_layout():
    model = build_model("lenet5")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (6, (5, 5), (2, 2)), (16, (5, 5), (0, 0))]
    assert [(f.in_features, f.out_features) for f in fcs] == [(400, 120), (120, 84), (84, 10)]
    assert build_model("lenet5", input_size=32).classifier.fc1.in_features == 576


def test_vgg16_has_13_convs_and_bn():
    plain = build_model("vgg16", in_channels=3, input_size=32)
    bn = build_model("vgg16_bn", in_channels=3, input_size=32)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in plain.modules()) == 13
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == 0
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules()) == 13


def test_build_model_errors():
    with pytest.raises(UsageError, match="unknown model"):
        build_model("resnet")
    with pytest.raises(UsageError, match="num_classes"):
        build_model("lenet5", num_classes=0)
    with pytest.raises(UsageError, match="output_scale"):
        build_model("lenet5", output_scale=-1.0)
    assert set(MODEL_NAMES) == {"lenet5", "vgg16", "vgg16_bn"}


def test_output_scale_multiplies_logits():
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    x = torch.randn(2, 1, 28, 28)
    base = model(x)
    set_output_scale(model, 4.0, learnable=True)
    assert torch.allclose(model(x), 4.0 * base, atol=1e-5)
    assert output_scale_of(model) == pytest.approx((4.0, True))
    assert any(n == "output_scale.log_scale" for n, _ in model.named_parameters())


def test_fashion_mnist_subset_normalised_and_deterministic():
    a = load_dataset("fashion-mnist", "test", limit=300)
    b = load_dataset("fashion-mnist", "test", limit=300)
    x, y = a.tensors
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))
    assert torch.equal(x, b.tensors[0]) and torch.equal(y, b.tensors[1])
    full = load_dataset("fashion-mnist", "train").tensors[0]
    assert len(full) == 60000
    assert abs(float(full.mean())) < 1e-2 and abs(float(full.std()) - 1) < 1e-2


def test_dataset_info_and_names():
    assert dataset_info("fashion-mnist")["input_size"] == 28
    assert dataset_info("cifar100")["num_classes"] == 100
    assert dataset_info("cifar10")["in_channels"] == 3
    assert DATASET_NAMES[0] == "fashion-mnist"
    with pytest.raises(UsageError, match="unknown dataset"):
        dataset_info("imagenet")


def test_missing_dataset_is_one_clear_line(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(DatasetError, match=str(tmp_path)):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(UsageError, match="limit"):
        load_dataset("fashion-mnist", limit=0)
    with pytest.raises(UsageError, match="split"):
        load_dataset("fashion-mnist", "val")


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_on_generated_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28))
    labels = np.array([3, 1, 4, 1, 5])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = load_dataset("fashion-mnist", "test", data_dir=tmp_path).tensors
    assert y.tolist() == [3, 1, 4, 1, 5]
    expected = (images[:, None] / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    _write_idx(tmp_path / "bad" / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "bad")


def test_make_loader_seeded():
    ds = load_dataset("fashion-mnist", "test", limit=64)
    first = [y.tolist() for _, y in make_loader(ds, 16, shuffle=True, seed=3)]
    again = [y.tolist() for _, y in make_loader(ds, 16, shuffle=True, seed=3)]
    assert first == again and len(first) == 4
    with pytest.raises(UsageError, match="batch_size"):
        make_loader(ds, 0)


META = dict(model="lenet5", dataset="fashion-mnist", num_classes=10, in_channels=1,
            input_size=28, method="plain", epoch=1)


def test_checkpoint_roundtrip_and_atomic(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet5", output_scale=2.0, learn_output_scale=True)
    path = save_checkpoint(tmp_path / "sub" / "c.pt", model, META, optimizer_state={"a": 1})
    assert not (tmp_path / "sub" / "c.pt.tmp").exists()
    loaded, meta = load_checkpoint(path, expect_model="lenet5")
    assert meta["method"] == "plain" and not loaded.training
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert output_scale_of(loaded) == pytest.approx((2.0, True))
    assert read_checkpoint(path)["optimizer_state"] == {"a": 1}


def test_checkpoint_errors(tmp_path):
    model = build_model("lenet5")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"x": 1}, other)
    with pytest.raises(CheckpointError, match="not a correctnet checkpoint"):
        load_checkpoint(other)
    good = save_checkpoint(tmp_path / "good.pt", model, META)
    with pytest.raises(CheckpointError, match="expected 'vgg16'"):
        load_checkpoint(good, expect_model="vgg16")
    wrong = save_checkpoint(tmp_path / "wrong.pt", model, dict(META, num_classes=5))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(wrong)
    with pytest.raises(CheckpointError, match="lacks"):
        save_checkpoint(tmp_path / "x.pt", model, {"model": "lenet5"})
    truncated = tmp_path / "trunc.pt"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    assert os.path.exists(good)


def test_checkpoint_bytes_are_reproducible(tmp_path):
    """Saving the same network twice writes the same bytes (the exact-resume claim of
    reproduce covers its .pt files; torch.save names its archive after the file it writes,
    so the atomic write's temporary file must not have a random name)."""
    torch.manual_seed(0)
    model = build_model("lenet5")
    meta = dict(model="lenet5", num_classes=10, in_channels=1, input_size=28)
    a = save_checkpoint(tmp_path / "a" / "net.pt", model, meta).read_bytes()
    b = save_checkpoint(tmp_path / "b" / "net.pt", model, meta).read_bytes()
    assert a == b
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["net.pt"]
