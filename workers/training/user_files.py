"""Readers for a user's own data (``dataset: file``): .npz, .csv and .pt.

Each returns labelled arrays per part: ``{"all": (x, y)}`` for data the task's split fractions
divide, or ``{"train": ..., "dev": ..., "test": ...}`` (test optional) where the file fixes
the split itself.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.training.image_files import DataFormatError

Parts = dict[str, tuple[np.ndarray, np.ndarray]]

_PARTS = ("train", "dev", "test")


def read_user_file(path: Path) -> Parts:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return _parts({k: archive[k] for k in archive.files}, path)
    if suffix == ".csv":
        return {"all": _read_csv(path)}
    if suffix == ".pt":
        return _read_pt(path)
    raise DataFormatError(f"{path}: dataset 'file' reads .npz, .csv or .pt, not {suffix!r}")


def _parts(arrays: Mapping[str, Any], path: Path) -> Parts:
    """Picks (x, y) or explicit x_train/y_train/x_dev/y_dev[/x_test/y_test], any key case."""
    by_name = {k.lower(): np.asarray(v) for k, v in arrays.items()}
    if "x_train" in by_name:
        parts: Parts = {}
        for part in _PARTS:
            x, y = by_name.get(f"x_{part}"), by_name.get(f"y_{part}")
            if x is None and y is None and part == "test":
                continue
            if x is None or y is None:
                raise DataFormatError(
                    f"{path}: explicit splits need x_{part} and y_{part}; keys: {sorted(arrays)}"
                )
            parts[part] = (x, y)
        return parts
    if "x" in by_name and "y" in by_name:
        return {"all": (by_name["x"], by_name["y"])}
    raise DataFormatError(
        f"{path}: expected keys X and y (or x_train, y_train, x_dev, y_dev[, x_test, y_test]); "
        f"found {sorted(arrays)}"
    )


def _read_pt(path: Path) -> Parts:
    # weights_only: a .pt file is a pickle, and this one comes from whoever wrote the study.
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises a bare RuntimeError/UnpicklingError mix
        raise DataFormatError(f"{path}: not a tensor file torch can load safely: {e}") from None
    if isinstance(obj, tuple | list) and len(obj) == 2:
        return {"all": (_numpy(obj[0]), _numpy(obj[1]))}
    if isinstance(obj, dict):
        return _parts({str(k): _numpy(v) for k, v in obj.items()}, path)
    raise DataFormatError(f"{path}: expected a dict of tensors or a tuple (X, y)")


def _numpy(v: Any) -> np.ndarray:
    return v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Last column is the label (any text); the first row is a header when it is not numeric."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if rows and not _numeric(rows[0][:-1]):
        rows = rows[1:]
    if not rows:
        raise DataFormatError(f"{path}: no data rows")
    width = len(rows[0])
    if width < 2:
        raise DataFormatError(f"{path}: need at least one feature column and a label column")
    features: list[list[float]] = []
    for line, row in enumerate(rows, start=1):
        if len(row) != width or not _numeric(row[:-1]):
            raise DataFormatError(
                f"{path}: data row {line} must have {width} columns, all but the last numeric"
            )
        features.append([float(c) for c in row[:-1]])
    labels = np.asarray([row[-1].strip() for row in rows])
    return np.asarray(features, dtype=np.float32), labels


def _numeric(cells: list[str]) -> bool:
    try:
        for c in cells:
            float(c)
    except ValueError:
        return False
    return True
