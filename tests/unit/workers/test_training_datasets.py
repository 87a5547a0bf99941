"""Dataset loaders on small files written in each real format, and the train/dev/test split."""

from __future__ import annotations

import gzip
import math
import pickle
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpsearch.spec import SplitSpec
from workers.training import train_trial
from workers.training.datasets import Dataset, load_dataset
from workers.training.image_files import DataFormatError
from workers.training.splits import SplitError, make_splits, split_indices

Blobs = Callable[..., tuple[np.ndarray, np.ndarray]]


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX layout of the MNIST distribution: magic (0, 0, type 0x08, ndim), big-endian
    uint32 dimensions, then the raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(folder: Path, n_train: int = 6, n_test: int = 4, suffix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", labels)


def write_cifar(folder: Path, per_batch: int = 4) -> None:
    """Six pickled batches with bytes keys, as in cifar-10-python.tar.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        data = np.full((per_batch, 3072), b, dtype=np.uint8)
        batch = {b"data": data, b"labels": [(b + i) % 10 for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_digits_are_8x8_images_of_ten_classes() -> None:
    d = load_dataset("digits", None)
    assert d.x.shape == (1797, 1, 8, 8)
    assert d.n_classes == 10 and set(d.y.tolist()) == set(range(10))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_reads_idx_files_and_pools_train_and_test(tmp_path: Path, suffix: str) -> None:
    write_mnist(tmp_path, suffix=suffix)
    d = load_dataset("mnist", str(tmp_path))
    assert d.x.shape == (10, 1, 28, 28) and d.x.dtype == np.uint8
    assert d.y.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    assert d.scale == pytest.approx(1 / 255)
    raw = (tmp_path / f"train-images-idx3-ubyte{suffix}").read_bytes()
    first = np.frombuffer(gzip.decompress(raw) if suffix else raw, np.uint8, offset=16)
    assert np.array_equal(d.x[0, 0].ravel(), first[: 28 * 28])


def test_fashion_mnist_is_found_in_torchvisions_raw_folder(tmp_path: Path) -> None:
    write_mnist(tmp_path / "FashionMNIST" / "raw", suffix=".gz")
    assert load_dataset("fashion_mnist", str(tmp_path)).x.shape == (10, 1, 28, 28)


def test_missing_idx_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        FileNotFoundError, match=re.escape(str(tmp_path / "t10k-labels-idx1-ubyte"))
    ):
        load_dataset("mnist", str(tmp_path))


def test_missing_data_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_dataset("file", str(missing))


def test_a_file_that_is_not_idx_is_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataFormatError, match="IDX"):
        load_dataset("mnist", str(tmp_path))


@pytest.mark.parametrize("inside", [True, False])
def test_cifar10_reads_pickled_batches(tmp_path: Path, inside: bool) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py" if inside else tmp_path)
    d = load_dataset("cifar10", str(tmp_path))
    assert d.x.shape == (24, 3, 32, 32)
    assert d.y[:5].tolist() == [0, 1, 2, 3, 1]
    assert d.x[4].max() == 1 and d.x[-1].min() == 5  # batch order kept: test_batch last


def test_cifar10_names_a_missing_batch(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", str(tmp_path))


@pytest.mark.parametrize("keys", [("X", "y"), ("x", "y")])
def test_npz_with_x_and_y(tmp_path: Path, make_blobs: Blobs, keys: tuple[str, str]) -> None:
    x, y = make_blobs(30)
    arrays: dict[str, Any] = {keys[0]: x, keys[1]: y}
    np.savez(tmp_path / "d.npz", **arrays)
    d = load_dataset("file", str(tmp_path / "d.npz"))
    assert d.x.shape == (30, 1, 8, 8) and np.array_equal(d.y, y) and d.given is None


def test_npz_with_explicit_splits_keeps_them(tmp_path: Path, make_blobs: Blobs) -> None:
    x, y = make_blobs(50)
    np.savez(
        tmp_path / "d.npz",
        x_train=x[:30],
        y_train=y[:30],
        x_dev=x[30:40],
        y_dev=y[30:40],
        x_test=x[40:],
        y_test=y[40:],
    )
    d = load_dataset("file", str(tmp_path / "d.npz"))
    splits = make_splits(d, SplitSpec(), normalize=False, with_test=True)
    assert (len(splits.train), len(splits.dev)) == (30, 10)
    assert splits.test is not None and torch.equal(splits.test.x, torch.from_numpy(x[40:]))
    assert sorted(splits.train.y.tolist()) == sorted(y[:30].tolist())


def test_npz_without_known_keys_lists_what_it_found(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", features=np.zeros((3, 2)), target=np.zeros(3))
    with pytest.raises(DataFormatError, match="features"):
        load_dataset("file", str(tmp_path / "d.npz"))


@pytest.mark.parametrize("header", [True, False])
def test_csv_last_column_is_the_label(tmp_path: Path, header: bool) -> None:
    rows = ["1.5,2,cat", "0,-1,dog", "3,4e-1,cat", "2,2,bird"]
    text = ("a,b,animal\n" if header else "") + "\n".join(rows) + "\n"
    (tmp_path / "d.csv").write_text(text)
    d = load_dataset("file", str(tmp_path / "d.csv"))
    assert d.x.shape == (4, 2) and d.x[2].tolist() == pytest.approx([3.0, 0.4])
    assert d.y.tolist() == [1, 2, 1, 0] and d.n_classes == 3  # sorted: bird, cat, dog


def test_csv_with_numeric_labels_keeps_them(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("0.1,2\n0.2,0\n0.3,1\n")
    d = load_dataset("file", str(tmp_path / "d.csv"))
    assert d.y.tolist() == [2, 0, 1] and d.n_classes == 3


def test_pt_dict_and_tuple(tmp_path: Path, make_blobs: Blobs) -> None:
    x, y = make_blobs(20)
    torch.save({"X": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "a.pt")
    torch.save((torch.from_numpy(x[:, 0]), torch.from_numpy(y)), tmp_path / "b.pt")
    a = load_dataset("file", str(tmp_path / "a.pt"))
    b = load_dataset("file", str(tmp_path / "b.pt"))
    assert a.x.shape == (20, 1, 8, 8) and np.array_equal(a.y, y)
    assert b.x.shape == (20, 1, 8, 8)  # (N, H, W) gains its channel
    assert np.array_equal(a.x, b.x)


def test_channels_last_images_become_channels_first(tmp_path: Path) -> None:
    x = np.arange(2 * 5 * 5 * 3, dtype=np.uint8).reshape(2, 5, 5, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    d = load_dataset("file", str(tmp_path / "d.npz"))
    assert d.x.shape == (2, 3, 5, 5) and d.x[1, 2, 4, 4] == x[1, 4, 4, 2]
    assert d.scale == pytest.approx(1 / 255)


def _dataset(n: int) -> Dataset:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return Dataset(x, np.arange(n) % 3, 3, 1.0)


def test_split_fractions_give_disjoint_parts_of_the_right_size() -> None:
    parts = split_indices(_dataset(1000), SplitSpec(train=0.6, dev=0.2, test=0.1, train_dev=0.25))
    sizes = {k: len(v) for k, v in parts.items()}
    assert sizes == {"train": 450, "train_dev": 150, "dev": 200, "test": 100}
    together = np.concatenate(list(parts.values()))
    assert len(set(together.tolist())) == len(together) == 900


def test_split_depends_on_its_seed_only_and_test_size_moves_nothing_else() -> None:
    a = split_indices(_dataset(500), SplitSpec(test=0.2, seed=7))
    b = split_indices(_dataset(500), SplitSpec(test=0.1, seed=7))
    c = split_indices(_dataset(500), SplitSpec(test=0.2, seed=8))
    assert np.array_equal(a["train"], b["train"]) and np.array_equal(a["dev"], b["dev"])
    assert not np.array_equal(a["train"], c["train"])


def test_normalization_is_fitted_on_train_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(600, 4)).astype(np.float32)
    d = Dataset(x, np.zeros(600, dtype=np.int64), 1, 1.0)
    s = make_splits(d, SplitSpec(), normalize=True, with_test=True)
    assert s.train.x.mean(0).abs().max() < 1e-4
    assert (s.train.x.std(0, correction=0) - 1).abs().max() < 1e-4
    assert s.dev.x.mean(0).abs().max() > 1e-3  # dev statistics were not used
    assert s.test is not None


def test_images_are_normalized_per_channel() -> None:
    d = load_dataset("digits", None)
    s = make_splits(d, SplitSpec(), normalize=True, with_test=False)
    assert s.train.x.shape[1:] == (1, 8, 8)
    assert abs(float(s.train.x.mean())) < 1e-4 and abs(float(s.train.x.std()) - 1) < 1e-3
    assert s.test is None


def test_an_empty_dev_set_is_an_error() -> None:
    with pytest.raises(SplitError, match="dev"):
        split_indices(_dataset(3), SplitSpec(train=0.9, dev=0.1, test=0.0))


@pytest.mark.parametrize(
    ("dataset", "write", "shape"),
    [
        (
            "fashion_mnist",
            lambda p: write_mnist(p, n_train=40, n_test=20, suffix=".gz"),
            (1, 28, 28),
        ),
        ("cifar10", lambda p: write_cifar(p / "cifar-10-batches-py", per_batch=8), (3, 32, 32)),
    ],
)
def test_cnn_trains_on_each_image_format(
    tmp_path: Path, dataset: str, write: Callable[[Path], None], shape: tuple[int, ...]
) -> None:
    write(tmp_path)
    task = {
        "trainer": "cnn_classifier",
        "dataset": dataset,
        "data_path": str(tmp_path),
        "epochs": 1,
        "fixed": {"channels": 2, "hidden_units": 8},
    }
    result = train_trial({}, task, lambda e, m: False, seed=0)
    assert result.epochs_run == 1 and math.isfinite(result.metrics["dev_loss"])
    assert result.metrics["n_params"] == (
        shape[0] * 2 * 9
        + 2
        + 2 * 4 * 9
        + 4
        + 4 * (shape[1] // 4) * (shape[2] // 4) * 8
        + 8
        + 8 * 10
        + 10
    )


def test_mlp_trains_on_a_csv_file(tmp_path: Path, make_blobs: Blobs) -> None:
    x, y = make_blobs(120)
    names = np.array(["low", "mid", "high"])[y]
    lines = ["f" + ",f".join(map(str, range(64))) + ",label"]
    lines += [
        ",".join(f"{v:.4f}" for v in row) + f",{n}"
        for row, n in zip(x.reshape(120, -1), names, strict=True)
    ]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    task = {"trainer": "mlp_classifier", "dataset": "file", "data_path": str(tmp_path / "d.csv")}
    result = train_trial(
        {"optimizer": "adam", "lr": 0.01}, {**task, "epochs": 3}, lambda e, m: False, seed=0
    )
    assert result.metrics["train_accuracy"] > 0.5
