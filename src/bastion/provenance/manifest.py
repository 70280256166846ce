"""Dataset manifests: a versioned JSON record of exactly which bytes a dataset held.

A manifest pins a dataset at one moment: the sha256 of every source file, of every sample's input
(and its label), and a Merkle root over the samples (:mod:`bastion.provenance.merkle`), with the class
counts and shape for a human reader. :func:`bastion.provenance.verify` later names what changed. What is
hashed, byte for byte, is defined in :mod:`bastion.provenance.hashing`; reading a manifest back (with
its checks) is :func:`bastion.provenance.manifest_json.load_manifest`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bastion.data import Dataset
from bastion.errors import DataError
from bastion.provenance.hashing import hash_files, input_hashes, leaf_hashes, source_files
from bastion.provenance.merkle import merkle_root

__all__ = ["FORMAT", "VERSION", "FileRecord", "Manifest", "build_manifest"]

FORMAT = "bastion.manifest"
VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileRecord:
    """One source file: ``name`` relative to the dataset's directory, ``size`` in bytes, hex ``sha256``."""

    name: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        if not self.name or self.size < 0 or not _HEX64.fullmatch(self.sha256):
            raise DataError(f"bad file record {self!r}: needs a name, a size >= 0 and a hex sha256")


@dataclass(frozen=True)
class Manifest:
    """Per-sample ``input_sha256`` (hex) and ``labels``, in dataset order; ``merkle_root`` over the leaves
    ``sha256(0x00 || input_sha256 || int64_le(label))``; the source ``files``; ``created`` (UTC ISO-8601)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    bounds: tuple[float, float]
    class_names: tuple[str, ...]
    labels: tuple[int, ...]
    input_sha256: tuple[str, ...]
    merkle_root: str
    files: tuple[FileRecord, ...] = ()
    spec: str | None = None
    split: str | None = None
    created: str = ""
    bastion_version: str = ""
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.version != VERSION:
            raise DataError(
                f"manifest format version {self.version} is not supported (this bastion reads "
                f"version {VERSION}); rebuild it with `bastion data manifest`"
            )
        if not self.shape or min(self.shape) < 1:
            raise DataError(f"shape must list the positive sizes of one sample, got {self.shape}")
        try:
            floating = np.dtype(self.dtype).kind == "f"
        except TypeError:
            floating = False
        if not floating:
            raise DataError(f"dtype must be a floating-point type such as 'float32', got {self.dtype!r}")
        if not self.bounds[0] < self.bounds[1]:
            raise DataError(f"bounds must be (low, high) with low < high, got {self.bounds}")
        if len(self.labels) != len(self.input_sha256):
            raise DataError(f"{len(self.input_sha256)} sample hashes but {len(self.labels)} labels")
        if self.labels and (min(self.labels) < 0 or max(self.labels) >= len(self.class_names)):
            raise DataError(f"labels must lie in [0, {len(self.class_names)}) (one per class name)")
        joined = "".join(self.input_sha256)
        if len(joined) != 64 * len(self.input_sha256) or not re.fullmatch(r"[0-9a-f]*", joined):
            raise DataError("input_sha256 must hold 64-character lowercase hex digests, one per sample")
        if not _HEX64.fullmatch(self.merkle_root):
            raise DataError(f"merkle_root must be a 64-character hex digest, got {self.merkle_root!r}")

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> tuple[int, ...]:
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=self.num_classes)
        return tuple(int(c) for c in counts)

    @cached_property
    def leaves(self) -> tuple[bytes, ...]:
        """The 32-byte Merkle leaves, in dataset order (computed on first use)."""
        inputs = [bytes.fromhex(h) for h in self.input_sha256]
        return tuple(leaf_hashes(inputs, np.asarray(self.labels, dtype=np.int64)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "created": self.created,
            "bastion_version": self.bastion_version,
            "data": {
                "spec": self.spec,
                "name": self.name,
                "split": self.split,
                "n_samples": self.n_samples,
                "shape": list(self.shape),
                "dtype": self.dtype,
                "bounds": list(self.bounds),
                "class_names": list(self.class_names),
                "class_counts": dict(zip(self.class_names, self.class_counts, strict=True)),
            },
            "hashing": {
                "input": f"sha256 of x[i] as little-endian {self.dtype}, C order",
                "leaf": "sha256(0x00 || input_sha256[i] || int64_le(label[i]))",
                "merkle": "RFC 6962 nodes sha256(0x01 || left || right); an odd last node is promoted",
            },
            "merkle_root": self.merkle_root,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
            "samples": {"input_sha256": list(self.input_sha256), "labels": list(self.labels)},
        }

    def save(self, path: str | Path) -> Path:
        """Write the manifest as JSON, atomically (a reader never sees half a file); returns the path."""
        from bastion._files import atomic_write

        p = Path(path)
        atomic_write(p, lambda fh: fh.write(json.dumps(self.to_dict(), indent=1) + "\n"), "w")
        return p


def build_manifest(
    dataset: Dataset,
    *,
    files: Mapping[str, str | Path] | None = None,
    spec: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Hash ``dataset`` (x (N, ...), y (N,)) and its source ``files`` (``name -> path``; default: the files
    its loader recorded, see :func:`~bastion.provenance.hashing.source_files`) into a :class:`Manifest`.

    Deterministic: the same data gives the same hashes and root; only ``created`` differs. ``spec`` (the
    data spec string) and the split are recorded so ``verify`` can reload the same data.
    """
    from bastion import __version__

    chosen = source_files(dataset) if files is None else dict(files)
    records = hash_files(chosen, progress)
    missing = sorted(name for name, rec in records.items() if rec is None)
    if missing:
        raise DataError(f"source file(s) not found: {', '.join(missing)}; pass the files that exist")
    inputs = input_hashes(dataset.x, "float32")
    leaves = leaf_hashes(inputs, dataset.y)
    split = dataset.meta.get("split")
    return Manifest(
        name=dataset.name,
        shape=dataset.input_shape,
        dtype="float32",
        bounds=(float(dataset.bounds[0]), float(dataset.bounds[1])),
        class_names=tuple(dataset.class_names),
        labels=tuple(dataset.y.cpu().tolist()),
        input_sha256=tuple(h.hex() for h in inputs),
        merkle_root=merkle_root(leaves).hex(),
        files=tuple(FileRecord(n, *rec) for n, rec in records.items() if rec is not None),
        spec=spec,
        split=split if isinstance(split, str) else None,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        bastion_version=__version__,
    )
