"""Readers for the original distribution formats of MNIST-like and CIFAR-10 data.

Only the file formats live here; which files make a dataset is :mod:`.datasets`' business.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

# IDX type codes (http://yann.lecun.com/exdb/mnist/): the third byte of the magic number.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataFormatError(ValueError):
    """A data file that exists but is not in the format its name promises."""


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (gzipped when its name ends in .gz) into an array of its own shape."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data: bytes = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataFormatError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: IDX header is truncated")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataFormatError(
            f"{path}: IDX header promises {dims} ({expected} bytes), "
            f"file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads one pickled CIFAR-10 batch: images (N, 3, 32, 32) uint8 and labels (N,).

    The official batches are Python pickles; only open ones from a source you trust.
    """
    with open(path, "rb") as f:
        try:
            batch = pickle.load(f, encoding="bytes")
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise DataFormatError(f"{path} is not a CIFAR-10 pickle batch: {e}") from None
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: expected a dict with b'data' and b'labels'")
    # Batches pickled by Python 3 code have str keys; the official ones have bytes keys.
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataFormatError(f"{path}: expected keys b'data' and b'labels'")
    images = np.asarray(data, dtype=np.uint8)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) != len(labels):
        raise DataFormatError(
            f"{path}: data must be (N, 3072) with N labels, got {images.shape}, {len(labels)}"
        )
    return images.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
