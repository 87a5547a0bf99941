"""The datasets a task can name, loaded from local files only (nothing is ever downloaded).

A :class:`Dataset` is the examples as stored, before any split: features as (N, D) or images
as (N, C, H, W), integer class labels, and where the source fixes its own train/dev/test
split, the indices of each part.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.training.image_files import DataFormatError, read_cifar_batch, read_idx
from workers.training.user_files import read_user_file


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    """(N, D) features or (N, C, H, W) images, in the source's dtype (read-only)."""
    y: np.ndarray
    """(N,) int64 class indices in [0, n_classes)."""
    n_classes: int
    scale: float
    """Multiplies x into floats of order one (1/255 for bytes) before any normalization."""
    given: Mapping[str, np.ndarray] | None = None
    """Indices of train/dev[/test] where the source fixes the split; None: split by fractions."""


def load_dataset(name: str, data_path: str | None) -> Dataset:
    """Loads a dataset by its task name; raises FileNotFoundError naming any missing path.

    Results are cached per (name, path, modification time): a worker runs many trials of one
    study, and reading MNIST again for each would cost more than training on a slice of it.
    """
    if name == "digits":
        return _cached(name, None, 0)
    if data_path is None:
        raise ValueError(f"dataset {name!r} needs task.data_path (a local path)")
    path = Path(data_path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"dataset {name!r}: data_path {path} does not exist")
    return _cached(name, str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _cached(name: str, path: str | None, mtime_ns: int) -> Dataset:
    del mtime_ns  # part of the cache key only
    if name == "digits":
        return _digits()
    assert path is not None
    if name == "mnist":
        return _mnist(Path(path), "MNIST")
    if name == "fashion_mnist":
        return _mnist(Path(path), "FashionMNIST")
    if name == "cifar10":
        return _cifar10(Path(path))
    if name == "file":
        return _from_parts(read_user_file(Path(path)), path)
    raise ValueError(f"unknown dataset {name!r}")


def _digits() -> Dataset:
    from sklearn.datasets import load_digits  # imported late: only this dataset needs sklearn

    digits = load_digits()
    images = digits.images.astype(np.float32)[:, None]  # 8×8 grey images, values 0..16
    return _frozen(Dataset(images, digits.target.astype(np.int64), 10, 1 / 16))


_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _mnist(folder: Path, torchvision_name: str) -> Dataset:
    """MNIST or Fashion-MNIST from the four original IDX files, train and t10k pooled so the
    task's split fractions apply (dev and test then come from one distribution)."""
    places = [folder, folder / "raw", folder / torchvision_name / "raw"]
    arrays = {key: read_idx(_find_idx(places, stem)) for key, stem in _IDX_STEMS.items()}
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise DataFormatError(
            f"{folder}: IDX images must be (N, H, W) with N labels, "
            f"got {images.shape} and {labels.shape}"
        )
    return _frozen(Dataset(images[:, None], labels, 10, 1 / 255))


def _find_idx(places: list[Path], stem: str) -> Path:
    # Some mirrors write "train-images.idx3-ubyte"; torchvision keeps the originals in raw/.
    names = [stem, stem.replace("-idx", ".idx")]
    for place in places:
        for name in names:
            for suffix in ("", ".gz"):
                candidate = place / (name + suffix)
                if candidate.is_file():
                    return candidate
    raise FileNotFoundError(
        f"missing {places[0] / stem} (or .gz; also looked in {', '.join(map(str, places[1:]))})"
    )


def _cifar10(path: Path) -> Dataset:
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [folder / n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 batch missing: {', '.join(map(str, missing))}")
    batches = [read_cifar_batch(folder / n) for n in names]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return _frozen(Dataset(images, labels, 10, 1 / 255))


def _from_parts(parts: Mapping[str, tuple[np.ndarray, np.ndarray]], source: str) -> Dataset:
    """Joins a user file's parts into one array, remembering which indices each part holds."""
    xs = [model_input(x, f"{source} ({part})") for part, (x, _) in parts.items()]
    for part, (x, y) in parts.items():
        if len(x) != len(y):
            raise DataFormatError(f"{source} ({part}): {len(x)} examples but {len(y)} labels")
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) > 1:
        raise DataFormatError(f"{source}: parts have different example shapes: {sorted(shapes)}")
    y, n_classes = class_indices(np.concatenate([y for _, y in parts.values()]))
    x = np.concatenate(xs)
    scale = 1 / 255 if x.dtype == np.uint8 else 1.0
    given = None
    if "all" not in parts:
        ends = np.cumsum([len(p[1]) for p in parts.values()])
        given = {
            part: np.arange(end - len(p[1]), end)
            for (part, p), end in zip(parts.items(), ends, strict=True)
        }
    return _frozen(Dataset(x, y, n_classes, scale, given))


def model_input(x: np.ndarray, what: str) -> np.ndarray:
    """(N, D) features stay; (N, H, W) gains a channel; (N, H, W, C) with C in {1, 3} and
    H not (the usual NumPy image layout) becomes PyTorch's (N, C, H, W)."""
    if x.dtype.kind not in "biuf":
        raise DataFormatError(f"{what}: features must be numeric, got dtype {x.dtype}")
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[3] in (1, 3) and x.shape[1] not in (1, 3):
            return x.transpose(0, 3, 1, 2)
        return x
    raise DataFormatError(f"{what}: expected (N, D), (N, H, W) or (N, C, H, W), got {x.shape}")


def class_indices(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense non-negative integer labels are kept (class k is k); anything else, text and
    sparse codes such as {10, 2000} included, is numbered in sorted order."""
    if labels.ndim != 1:
        raise DataFormatError(f"labels must be one-dimensional, got shape {labels.shape}")
    as_numbers = labels
    if labels.dtype.kind in "US":
        try:
            as_numbers = labels.astype(np.float64)
        except ValueError:
            as_numbers = labels
    if (
        as_numbers.dtype.kind in "biuf"
        and len(as_numbers) > 0
        and np.all(np.isfinite(as_numbers))
        and np.all(as_numbers == np.round(as_numbers))
        and as_numbers.min() >= 0
    ):
        y = as_numbers.astype(np.int64)
        if y.max() < 2 * len(np.unique(y)):
            return y, int(y.max()) + 1
    values, y = np.unique(as_numbers, return_inverse=True)
    return y.astype(np.int64), len(values)


def _frozen(dataset: Dataset) -> Dataset:
    # The cache hands the same arrays to every trial; make sharing them safe.
    dataset.x.flags.writeable = False
    dataset.y.flags.writeable = False
    return dataset
