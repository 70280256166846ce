"""Reading a manifest back: the JSON that :meth:`Manifest.save` writes, checked field by field.

A manifest is evidence, so a damaged one must not pass for a valid one: every field is type-checked,
the format name and version must match, and the stored Merkle root is recomputed from the stored
sample hashes and labels (an edited hash or label in the file is caught here, before any data is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion.errors import DataError
from bastion.provenance.manifest import FORMAT, VERSION, FileRecord, Manifest
from bastion.provenance.merkle import merkle_root

__all__ = ["load_manifest"]


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise DataError(f"missing field {where}.{key}; the file is not a complete bastion manifest")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"field {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest written by :meth:`Manifest.save`; DataError when the file is missing, not JSON,
    another format or version, incomplete, or internally inconsistent (the stored Merkle root does not
    match the stored sample hashes: the manifest itself was edited)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"manifest {p} does not exist; create one with `bastion data manifest DATA --out {p}`"
        )
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p} is not a JSON manifest ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f'{p} is not a bastion manifest (no "format": "{FORMAT}")')
    try:
        manifest = _parse(raw)
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{p}: malformed manifest ({type(exc).__name__}: {exc})") from None
    if merkle_root(manifest.leaves).hex() != manifest.merkle_root:
        raise DataError(
            f"{p}: the stored Merkle root does not match the stored sample hashes; the manifest was "
            "edited or corrupted. Restore it from a trusted copy or rebuild it from trusted data"
        )
    return manifest


def _parse(raw: dict[str, Any]) -> Manifest:
    version = _field(raw, "version", int, "manifest")
    if version != VERSION:
        raise DataError(
            f"manifest format version {version} is not supported (this bastion reads version "
            f"{VERSION}); rebuild it with `bastion data manifest`"
        )
    data = _field(raw, "data", dict, "manifest")
    samples = _field(raw, "samples", dict, "manifest")
    labels = _field(samples, "labels", list, "samples")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise DataError("samples.labels must be integers")
    files = tuple(
        FileRecord(str(f["name"]), int(f["size"]), str(f["sha256"]))
        for f in _field(raw, "files", list, "manifest")
    )
    low, high = (float(b) for b in _field(data, "bounds", list, "data"))
    spec, split = data.get("spec"), data.get("split")
    manifest = Manifest(
        name=str(_field(data, "name", str, "data")),
        shape=tuple(int(d) for d in _field(data, "shape", list, "data")),
        dtype=str(_field(data, "dtype", str, "data")),
        bounds=(low, high),
        class_names=tuple(str(c) for c in _field(data, "class_names", list, "data")),
        labels=tuple(labels),
        input_sha256=tuple(str(h) for h in _field(samples, "input_sha256", list, "samples")),
        merkle_root=str(_field(raw, "merkle_root", str, "manifest")),
        files=files,
        spec=spec if isinstance(spec, str) else None,
        split=split if isinstance(split, str) else None,
        created=str(raw.get("created", "")),
        bastion_version=str(raw.get("bastion_version", "")),
    )
    counts = data.get("class_counts")
    if counts is not None and counts != dict(zip(manifest.class_names, manifest.class_counts, strict=True)):
        raise DataError("data.class_counts disagree with samples.labels; the manifest was edited")
    return manifest
