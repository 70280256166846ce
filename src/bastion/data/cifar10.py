"""CIFAR-10 stored as numpy archives (no pickle): a directory of parts or a single .npz file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bastion.data._util import (
    check_finite,
    check_split,
    existing_path,
    labels_from_array,
    read_npz,
    uint8_to_float,
)
from bastion.data.dataset import Dataset
from bastion.errors import DataError

__all__ = ["CIFAR10_CLASSES", "load_cifar10"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TEST_FILE = "cifar10_test.npz"
TRAIN_FILES = tuple(f"cifar10_train_{i}.npz" for i in range(1, 6))


def _to_nchw(x: np.ndarray, source: Path) -> torch.Tensor:
    # Accept NHWC (how the shared copy stores it), NCHW, or the original flat rows of 3072 (CHW order).
    if x.ndim == 2 and x.shape[1] == 3 * 32 * 32:
        x = x.reshape(-1, 3, 32, 32)
    elif x.ndim == 4 and x.shape[3] == 3:
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] == 3):
        raise DataError(f"{source}: x has shape {x.shape}; expected (N, 32, 32, 3) uint8 images")
    if x.dtype == np.uint8:
        return uint8_to_float(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{source}: x has dtype {x.dtype}; expected uint8 pixels or floats in [0, 1]")
    check_finite(x, source)
    if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise DataError(f"{source}: float pixels must lie in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _read_part(path: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    arrays = read_npz(path, ("x",), optional=("y", "labels", "classes"))
    if "y" not in arrays and "labels" not in arrays:
        raise DataError(f"{path}: missing the labels array 'y'")
    x = _to_nchw(arrays["x"], path)
    y = labels_from_array(arrays["y"] if "y" in arrays else arrays["labels"], x.shape[0], path)
    names = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else ()
    return x, y, names


def load_cifar10(path: str | Path, split: str = "test") -> Dataset:
    """CIFAR-10 as x (N, 3, 32, 32) float32 in [0, 1], y (N,), classes airplane..truck.

    ``path`` is a directory holding ``cifar10_test.npz`` and ``cifar10_train_{1..5}.npz`` (``split``
    picks which), or a single ``.npz`` with ``x`` (N, 32, 32, 3) uint8 and ``y`` (then ``split`` is
    ignored). Archives are read with ``allow_pickle=False``.
    """
    check_split(split)
    root = existing_path(path, "a CIFAR-10 directory or .npz file")
    if root.is_dir():
        names = (TEST_FILE,) if split == "test" else TRAIN_FILES
        files = [root / n for n in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{root}: missing {', '.join(missing)} for the CIFAR-10 {split} split")
    else:
        files = [root]
    parts = [_read_part(f) for f in files]
    x = torch.cat([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y = torch.cat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    class_names = parts[0][2] if len(parts[0][2]) == len(CIFAR10_CLASSES) else CIFAR10_CLASSES
    return Dataset(
        x,
        y,
        num_classes=len(CIFAR10_CLASSES),
        bounds=(0.0, 1.0),
        class_names=class_names,
        name=f"cifar10-{split}",
        meta={"path": str(root), "split": split, "files": [str(f) for f in files]},
    )
