"""What a manifest hashes, byte for byte: each sample's input, each sample's leaf, each source file.

Canonical bytes (format version 1):

- **input hash** of sample ``i``: ``sha256`` of ``x[i]`` in the manifest's dtype (``float32`` from every
  bastion loader), little-endian, C order: ``np.ascontiguousarray(x[i], dtype="<f4").tobytes()``. It is
  the *loaded* representation that is hashed, so the same pixels read from IDX, .npz or an image folder
  hash alike, and a file change that leaves the decoded values equal (say, a re-compressed archive)
  shows in the file hashes only.
- **leaf** of sample ``i``: ``sha256(0x00 || input_hash[i] || int64_le(y[i]))`` (41 bytes hashed), so a
  changed pixel and a changed label both change the leaf, and the stored labels tell which changed.
- **file hash**: ``sha256`` of the file's bytes, read in 1 MiB chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from bastion.data import Dataset
from bastion.errors import DataError
from bastion.loading import sha256_file

__all__ = ["file_record", "hash_files", "input_hashes", "leaf_hashes", "source_files"]

_LEAF = b"\x00"


def input_hashes(x: torch.Tensor | np.ndarray, dtype: str = "float32") -> list[bytes]:
    """32-byte sha256 of each sample's bytes: ``x`` (N, ...) cast to little-endian ``dtype``, C order."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim < 1:
        raise DataError("x must have a sample dimension, shape (N, ...)")
    n = arr.shape[0]
    # One conversion of the whole array, then hash memoryview slices: no per-sample copies.
    flat = np.ascontiguousarray(arr.reshape(n, -1), dtype=np.dtype(dtype).newbyteorder("<"))
    view = memoryview(flat).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers
    step = flat.shape[1] * flat.itemsize
    sha = hashlib.sha256
    return [sha(view[i * step : (i + 1) * step]).digest() for i in range(n)]


def leaf_hashes(inputs: list[bytes], labels: torch.Tensor | np.ndarray) -> list[bytes]:
    """Merkle leaves ``sha256(0x00 || input_hash || int64_le(label))``, one per sample."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != (len(inputs),):
        raise DataError(f"{len(inputs)} input hashes but labels of shape {y.shape}")
    raw = np.ascontiguousarray(y, dtype="<i8").tobytes()
    sha = hashlib.sha256
    return [sha(_LEAF + h + raw[8 * i : 8 * i + 8]).digest() for i, h in enumerate(inputs)]


def file_record(path: Path) -> tuple[int, str]:
    """``(size in bytes, hex sha256)`` of a file (:func:`bastion.loading.sha256_file`, 1 MiB chunks)."""
    return path.stat().st_size, sha256_file(path)


def _name(path: Path, root: Path | None) -> str:
    if root is not None and root.is_dir():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def source_files(dataset: Dataset) -> dict[str, Path]:
    """The files ``dataset`` was read from, keyed by a portable name, as its loader recorded them.

    Names are paths relative to the dataset's directory (``meta["path"]``), or the bare file name for a
    single-file dataset, so a manifest still matches after the data directory moves. Datasets with no
    recorded files (``digits``, which ships inside scikit-learn, or tensors built in memory) give ``{}``.
    """
    meta = dataset.meta
    root = Path(meta["path"]) if meta.get("path") else None
    listed = meta.get("files")
    if listed:
        paths = [_locate(Path(f), root) for f in listed]
    elif root is not None and root.is_file():
        paths = [root]
    else:
        paths = []
    return {_name(p, root): p for p in paths}


def _locate(path: Path, root: Path | None) -> Path:
    """Where a listed file is. Loaders record either names relative to the dataset's directory
    (``train/cat/1.png``) or paths that already start with it (``../data/mnist/train.gz`` when the data
    was given as ``../data/mnist``); joining the root onto the second kind would name a file that is not
    there, and a manifest made from a relative path would then fail, or report files removed.
    """
    if path.is_absolute() or root is None:
        return path
    # Checked before joining: a doubled relative path can exist too (``../../d/../../d/f`` lands on
    # ``../../d/f`` again when the working directory is as deep as the data's parent).
    if path.is_relative_to(root) and path.exists():
        return path
    return root / path


def hash_files(
    files: Mapping[str, str | Path], progress: Callable[[int, int], None] | None = None
) -> dict[str, tuple[int, str] | None]:
    """``name -> (size, sha256)`` for each file, or ``None`` where the file is missing."""
    records: dict[str, tuple[int, str] | None] = {}
    for done, (name, path) in enumerate(sorted(files.items()), start=1):
        p = Path(path)
        records[name] = file_record(p) if p.is_file() else None
        if progress is not None:
            progress(done, len(files))
    return records
