"""Any dataset saved with ``np.savez(file, x=..., y=...)`` (read with ``allow_pickle=False``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bastion.data._util import (
    check_finite,
    count_classes,
    existing_path,
    labels_from_array,
    read_npz,
    uint8_to_float,
)
from bastion.data.dataset import Dataset
from bastion.errors import DataError
from bastion.threat import Bounds

__all__ = ["load_npz"]


def _layout(x: np.ndarray, source: Path) -> np.ndarray:
    """Put images in NCHW. The rule, applied to x's shape:

    - (N, D): tabular, kept;
    - (N, H, W): greyscale images, a channel dim is added -> (N, 1, H, W);
    - (N, A, B, C) with C in {1, 3} and A, B > 3: channels-last images (NHWC) -> (N, C, A, B);
    - any other (N, ...) of 4+ dims: assumed channels-first already, kept.
    """
    if x.ndim < 2:
        raise DataError(f"{source}: x must have shape (N, ...) with at least 2 dims, got {x.shape}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[3] in (1, 3) and x.shape[1] > 3 and x.shape[2] > 3:
        return x.transpose(0, 3, 1, 2)
    return x


def _bounds(x: np.ndarray, source: Path) -> Bounds:
    # Data already in [0, 1] is taken to be normalised images; anything else declares its own range.
    if x.size == 0:
        return (0.0, 1.0)
    low, high = float(x.min()), float(x.max())
    if low >= 0.0 and high <= 1.0:
        return (0.0, 1.0)
    if low == high:
        raise DataError(f"{source}: every value of x is {low}; cannot infer input bounds from constant data")
    return (low, high)


def load_npz(path: str | Path) -> Dataset:
    """x and y from an .npz; optional ``class_names`` (a string array).

    - x uint8 -> float32 / 255 with bounds (0, 1); other numeric dtypes -> float32, with bounds (0, 1)
      when all values lie in [0, 1] and (min, max) of the data otherwise (then ``meta["bounds_source"]``
      is ``"data"``: inferred, not declared).
    - Shapes follow the rule in :func:`_layout` (2-D tabular, 3-D gets a channel, 4-D NHWC -> NCHW).
    - y holds integer class indices; num_classes = len(class_names) when given, else max(y) + 1.
    """
    source = existing_path(path, "an .npz file with arrays 'x' and 'y'", directory=False)
    arrays = read_npz(source, ("x", "y"), optional=("class_names",))
    x_np = arrays["x"]
    if not (np.issubdtype(x_np.dtype, np.number) or x_np.dtype == np.bool_):
        raise DataError(f"{source}: x must be numeric, got dtype {x_np.dtype}")
    check_finite(x_np, source)
    x_np = _layout(x_np, source)
    if x_np.dtype == np.uint8:
        x = uint8_to_float(x_np)
        bounds: Bounds = (0.0, 1.0)
    else:
        x_f = np.ascontiguousarray(x_np, dtype=np.float32)
        check_finite(x_f, source)  # float64 values beyond float32 range overflow to inf
        bounds = _bounds(x_f, source)
        x = torch.from_numpy(x_f)
    y = labels_from_array(arrays["y"], x.shape[0], source)
    class_names = tuple(str(c) for c in arrays["class_names"].reshape(-1)) if "class_names" in arrays else ()
    num_classes = count_classes(y, class_names)
    # Bounds taken from the data's own range (not [0, 1]) are a guess the audit reports (BA110).
    inferred = {"bounds_source": "data"} if bounds != (0.0, 1.0) else {}
    return Dataset(
        x,
        y,
        num_classes=num_classes,
        bounds=bounds,
        class_names=class_names,
        name=source.stem,
        meta={"path": str(source), **inferred},
    )
