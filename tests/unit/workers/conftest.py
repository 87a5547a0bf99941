"""Fixtures for the PyTorch trainers: small generated data in the formats users hand us."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    # These models are tiny: a second thread only adds synchronisation, and on a 2-core box
    # it would fight the pytest process itself.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(
    n: int, n_classes: int = 3, seed: int = 0, noise: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, 8, 8) images: each class a fixed random pattern plus noise strong enough that
    the classes overlap, so losses fall gradually instead of hitting zero in one step."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(n_classes, 1, 8, 8))
    y = rng.integers(0, n_classes, size=n)
    x = patterns[y] + noise * rng.normal(size=(n, 1, 8, 8))
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture
def make_blobs() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return blobs


@pytest.fixture
def blobs_npz(tmp_path: Path) -> Path:
    x, y = blobs(400)
    path = tmp_path / "blobs.npz"
    np.savez(path, X=x, y=y)
    return path
