"""Datasets by name, held in memory as normalised float tensors.

Names (:data:`DATASET_NAMES`):

- ``fashion-mnist`` (default): the standard IDX files (``*-ubyte.gz`` or uncompressed), read
  with gzip + numpy from ``data_dir`` (also ``data_dir/FashionMNIST/raw``) or, without
  ``data_dir``, from ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``). ``download=True`` fetches it with torchvision into ``data_dir``.
- ``mnist``, ``cifar10``, ``cifar100``: through torchvision from ``data_dir``
  (``download=True`` downloads there; needs internet).

Every image becomes a float32 tensor ``(C, H, W)`` normalised per channel,
``x = (pixel / 255 - mean) / std``, with the training-set mean and std in :data:`_STATS`; labels
are int64. No augmentation. ``limit=N`` keeps the first ``N`` examples of the split (the same
examples every time; Fashion-MNIST and CIFAR are not sorted by class, so the subset is close to
balanced).
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from correctnet.errors import DatasetError, UsageError

#: Dataset names accepted by :func:`load_dataset`.
DATASET_NAMES: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "cifar100")

#: Where ``fashion-mnist`` is looked for when no ``data_dir`` is given.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# name -> (num_classes, in_channels, input_size, mean per channel, std per channel)
_STATS: dict[str, tuple[int, int, int, tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": (10, 1, 28, (0.2860,), (0.3530,)),
    "mnist": (10, 1, 28, (0.1307,), (0.3081,)),
    "cifar10": (10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": (100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise UsageError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}")


def dataset_info(name: str) -> dict:
    """Shape facts of a dataset.

    Args:
        name: One of :data:`DATASET_NAMES`.

    Returns:
        ``dict(num_classes, in_channels, input_size, mean, std)`` (mean/std: per channel, of
        pixel values scaled to [0, 1]).

    Raises:
        UsageError: Unknown name.
    """
    _check_name(name)
    classes, channels, size, mean, std = _STATS[name]
    return {"num_classes": classes, "in_channels": channels, "input_size": size,
            "mean": list(mean), "std": list(std)}


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a numpy array of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is truncated: IDX header incomplete")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, found {data.size} bytes")
    return data.reshape(dims)


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for directory in dirs:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.is_file():
                return candidate
    return None


def _fashion_mnist(split: str, data_dir: Path | None,
                   download: bool) -> tuple[np.ndarray, np.ndarray]:
    dirs = ([data_dir, data_dir / "FashionMNIST" / "raw"] if data_dir is not None
            else [SYSTEM_FASHION_MNIST])
    image_stem, label_stem = _IDX_STEMS[split]
    images, labels = _find_idx(dirs, image_stem), _find_idx(dirs, label_stem)
    if (images is None or labels is None) and download:
        if data_dir is None:
            raise DatasetError("fashion-mnist: --download needs --data-dir DIR to download into")
        import torchvision

        try:
            torchvision.datasets.FashionMNIST(str(data_dir), train=(split == "train"),
                                              download=True)
        except Exception as exc:  # network errors come in many types
            raise DatasetError(f"fashion-mnist: download into {data_dir} failed: {exc}") from exc
        images, labels = _find_idx(dirs, image_stem), _find_idx(dirs, label_stem)
    if images is None or labels is None:
        where = ", ".join(str(d) for d in dirs)
        raise DatasetError(
            f"fashion-mnist {split} split not found: looked for {image_stem}[.gz] in {where}; "
            "install it with `apt-get install dataset-fashion-mnist`, pass --data-dir DIR "
            "holding the IDX files, or add --download (needs internet)")
    return _read_idx(images), _read_idx(labels).astype(np.int64)


def _torchvision(name: str, split: str, data_dir: Path | None,
                 download: bool) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is None:
        raise DatasetError(f"{name}: no data directory; pass --data-dir DIR (add --download to "
                           "fetch it there, needs internet)")
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10,
           "cifar100": torchvision.datasets.CIFAR100}[name]
    try:
        ds = cls(str(data_dir), train=(split == "train"), download=download)
    except RuntimeError as exc:
        raise DatasetError(
            f"{name} {split} split not found in {data_dir} (torchvision layout); "
            f"pass --data-dir DIR holding it, or add --download (needs internet): {exc}") from exc
    except Exception as exc:  # network errors come in many types
        raise DatasetError(f"{name}: loading from {data_dir} failed: {exc}") from exc
    data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
    targets = np.asarray(ds.targets, dtype=np.int64)
    return data, targets


@functools.lru_cache(maxsize=8)
def _load_raw(name: str, split: str, data_dir: str | None,
              download: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 images ``(N, C, H, W)`` and int64 labels, cached per process."""
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    if name == "fashion-mnist":
        images, labels = _fashion_mnist(split, directory, download)
    else:
        images, labels = _torchvision(name, split, directory, download)
    if images.ndim == 3:                      # (N, H, W) -> (N, 1, H, W)
        images = images[:, None, :, :]
    else:                                     # CIFAR: (N, H, W, C) -> (N, C, H, W)
        images = images.transpose(0, 3, 1, 2)
    if len(images) != len(labels):
        raise DatasetError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    images = np.ascontiguousarray(images, dtype=np.uint8)
    images.flags.writeable = False
    labels = np.array(labels, dtype=np.int64)
    labels.flags.writeable = False
    return images, labels


def _normalise(name: str, images: np.ndarray) -> torch.Tensor:
    info = dataset_info(name)
    mean = torch.tensor(info["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(info["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return (torch.from_numpy(np.array(images, dtype=np.uint8)).float() / 255.0 - mean) / std


def load_dataset(name: str = "fashion-mnist", split: str = "train", *,
                 data_dir: str | Path | None = None, download: bool = False,
                 limit: int | None = None) -> TensorDataset:
    """Load a dataset split as an in-memory ``TensorDataset`` of ``(image, label)``.

    Args:
        name: One of :data:`DATASET_NAMES`.
        split: ``"train"`` or ``"test"``.
        data_dir: Directory to read from (see the module docstring); ``None``: system
            Fashion-MNIST only.
        download: Let torchvision download into ``data_dir`` if files are missing.
        limit: Keep only the first ``limit`` examples (deterministic); ``None``: all.

    Returns:
        ``TensorDataset`` with ``tensors = (x, y)``; x: ``(N, C, H, W)`` float32 normalised,
        y: ``(N,)`` int64 class indices.

    Raises:
        UsageError: Unknown name or split, or ``limit < 1``.
        DatasetError: Files missing or unreadable (one line saying where it looked and how to
            get the data).
    """
    _check_name(name)
    if split not in ("train", "test"):
        raise UsageError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit must be a positive integer or None, got {limit!r}")
    key_dir = str(Path(data_dir).expanduser().resolve()) if data_dir is not None else None
    images, labels = _load_raw(name, split, key_dir, bool(download))
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return TensorDataset(_normalise(name, images), torch.from_numpy(np.array(labels)))


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False,
                seed: int = 0) -> DataLoader:
    """Wrap a dataset in a single-process ``DataLoader``.

    Args:
        dataset: Any map-style dataset (usually from :func:`load_dataset`).
        batch_size: Examples per batch (>= 1).
        shuffle: Shuffle every epoch, drawn from a ``torch.Generator`` seeded with ``seed``
            (training reseeds it per epoch, so resumed runs see the same order).
        seed: Seed of the shuffling generator.

    Returns:
        The loader (``loader.generator`` holds the generator).

    Raises:
        UsageError: ``batch_size < 1``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=0)
