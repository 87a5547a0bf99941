"""Train / dev / test (and train-dev) tensors from a dataset, by the task's split spec.

The split depends only on the dataset and ``split.seed``, never on the trial's seed, so every
trial of a study, and the final test evaluation, see the very same examples. Normalization
statistics are fitted on the train part alone: dev and test must look like unseen data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hpsearch.spec import SplitSpec
from workers.training.datasets import Dataset


class SplitError(ValueError):
    """A split spec that leaves a needed part of the data empty."""


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    """float32 (N, D) or (N, C, H, W)."""
    y: torch.Tensor
    """int64 (N,)."""

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Splits:
    train: Split
    dev: Split
    train_dev: Split | None
    """Carved from the train distribution and never trained on: dev - train_dev is mismatch."""
    test: Split | None
    """Built only when asked for: the trials never see it."""
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def to(self, device: torch.device) -> Splits:
        def move(s: Split | None) -> Split | None:
            return None if s is None else s.to(device)

        return Splits(
            self.train.to(device),
            self.dev.to(device),
            move(self.train_dev),
            move(self.test),
            self.n_classes,
        )


def make_splits(dataset: Dataset, spec: SplitSpec, normalize: bool, *, with_test: bool) -> Splits:
    indices = split_indices(dataset, spec)
    if with_test and len(indices["test"]) == 0:
        raise SplitError("there is no test set: split.test is 0 (or the file gives no x_test)")
    train = _take(dataset, indices["train"])
    mean, std = _statistics(train) if normalize else (np.float32(0), np.float32(1))

    def part(name: str) -> Split:
        x = (_take(dataset, indices[name]) - mean) / std
        return Split(torch.from_numpy(x), torch.from_numpy(dataset.y[indices[name]]))

    return Splits(
        train=part("train"),
        dev=part("dev"),
        train_dev=part("train_dev") if len(indices["train_dev"]) else None,
        test=part("test") if with_test else None,
        n_classes=dataset.n_classes,
    )


def split_indices(dataset: Dataset, spec: SplitSpec) -> dict[str, np.ndarray]:
    """Indices of train, dev, test and train_dev (carved from the end of train).

    Pooled data is shuffled with ``spec.seed`` and cut as [train | dev | test | unused] by
    cumulative rounding, so the parts never overlap and changing ``test`` moves no train or
    dev example. A file's own split is kept as given; only train_dev is carved from it.
    """
    rng = np.random.default_rng(spec.seed)
    n = len(dataset.y)
    if dataset.given is not None:
        parts = {k: np.asarray(v) for k, v in dataset.given.items()}
        parts.setdefault("test", np.zeros(0, dtype=np.int64))
        parts["train"] = rng.permutation(parts["train"])
    else:
        order = rng.permutation(n)
        bounds = np.round(np.cumsum([spec.train, spec.dev, spec.test]) * n).astype(int)
        bounds = np.minimum(bounds, n)
        parts = {
            "train": order[: bounds[0]],
            "dev": order[bounds[0] : bounds[1]],
            "test": order[bounds[1] : bounds[2]],
        }
    n_train_dev = round(spec.train_dev * len(parts["train"]))
    cut = len(parts["train"]) - n_train_dev
    parts["train"], parts["train_dev"] = parts["train"][:cut], parts["train"][cut:]
    for name, fraction in (("train", spec.train), ("dev", spec.dev)):
        if len(parts[name]) == 0:
            raise SplitError(
                f"split.{name}={fraction:g} of {n} examples leaves the {name} set empty"
            )
    if spec.train_dev > 0 and n_train_dev == 0:
        raise SplitError(
            f"split.train_dev={spec.train_dev:g} of {cut} train examples is less than one"
        )
    return parts


def _take(dataset: Dataset, indices: np.ndarray) -> np.ndarray:
    x: np.ndarray = dataset.x[indices].astype(np.float32) * np.float32(dataset.scale)
    return x


def _statistics(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std for (N, D) data, per-channel for images (pixels of a channel
    share one scale, and a per-pixel std blows up the near-constant border pixels)."""
    axes = (0,) if train.ndim == 2 else (0, *range(2, train.ndim))
    mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    # A constant feature carries no information; dividing by ~0 would only amplify noise.
    std[std < 1e-6] = 1.0
    return mean[0].astype(np.float32), std[0].astype(np.float32)
