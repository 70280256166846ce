"""Shared checks for the loaders: paths, splits, finiteness, pixel scaling."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from bastion.errors import DataError

SPLITS = ("train", "test")


def check_split(split: str) -> str:
    """Return ``split`` when it is ``"train"`` or ``"test"``; raise a DataError otherwise."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    return split


def existing_path(path: str | Path, what: str, *, directory: bool | None = None) -> Path:
    """``path`` as a Path that exists (a directory when ``directory`` is True, a file when False)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p} does not exist; expected {what}")
    if directory is True and not p.is_dir():
        raise DataError(f"{p} is not a directory; expected {what}")
    if directory is False and not p.is_file():
        raise DataError(f"{p} is not a file; expected {what}")
    return p


def check_finite(x: np.ndarray, source: str | Path) -> None:
    """NaN or infinity in inputs would silently poison every attack and metric downstream."""
    if np.issubdtype(x.dtype, np.floating) and not bool(np.isfinite(x).all()):
        bad = int((~np.isfinite(x)).sum())
        raise DataError(f"{source}: x contains {bad} NaN or infinite values; clean the data first")


def uint8_to_float(x: np.ndarray) -> torch.Tensor:
    """Pixels 0..255 as float32 in [0, 1], same shape."""
    # torch warns on read-only buffers (np.frombuffer over bytes); the uint8 copy is cheap.
    x = np.ascontiguousarray(x) if x.flags.writeable else np.array(x, order="C")
    return torch.from_numpy(x).to(torch.float32).div_(255.0)


def labels_from_array(y: np.ndarray, n: int, source: str | Path) -> torch.Tensor:
    """Integer class labels (N,) as int64; floats are accepted only when they hold whole numbers."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{source}: y must have shape ({n},), got {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not bool(np.isfinite(y).all()) or not bool((y == np.round(y)).all()):
            raise DataError(f"{source}: y must hold integer class indices, got non-integer floats")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: y must hold integer class indices, got dtype {y.dtype}")
    if n and int(y.min()) < 0:
        raise DataError(f"{source}: y holds negative labels; class indices start at 0")
    return torch.from_numpy(y.astype(np.int64))


def read_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Arrays ``keys`` (required) and ``optional`` (when present) from an .npz, never unpickling."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            available = sorted(archive.files)
            missing = [k for k in keys if k not in available]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; the file holds: "
                    f"{', '.join(available) or 'nothing'}"
                )
            return {k: archive[k] for k in (*keys, *optional) if k in available}
    except DataError:
        raise
    except ValueError as exc:
        # numpy raises ValueError for object (pickled) arrays when allow_pickle=False.
        raise DataError(
            f"{path}: cannot read without unpickling ({exc}); store plain numeric arrays"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a CRC mismatch (corruption)
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc


def count_classes(y: torch.Tensor, class_names: tuple[str, ...]) -> int:
    """``len(class_names)`` when names are given, else ``max(y) + 1`` (1 for no labels)."""
    if class_names:
        return len(class_names)
    return int(y.max()) + 1 if y.numel() else 1
