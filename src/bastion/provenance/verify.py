"""Check data against a manifest and name exactly what changed: files, samples, labels, class counts.

How samples are matched. A sample is identified by its leaf (input hash and label, see
:mod:`bastion.provenance.hashing`). Samples whose leaf is unchanged at the same index match first;
the rest are matched by leaf anywhere else (duplicates pair up in order), so a deleted or inserted
sample is reported once, not as a shift of every sample after it, and a reordering shows as ``moved``
rather than as edits. What is left is unmatched: an index unmatched on both sides is ``changed`` (edited
in place: its pixels, its label or both, told apart by the stored input hash and label); the others
are ``removed`` (manifest indices) or ``added`` (current indices). Which pixels of a changed sample
differ cannot be known from hashes; compare against a trusted copy for that.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bastion.data import Dataset
from bastion.provenance.hashing import hash_files, input_hashes, leaf_hashes, source_files
from bastion.provenance.manifest import Manifest
from bastion.provenance.merkle import merkle_root

__all__ = ["SampleChange", "VerifyReport", "verify", "verify_files"]


@dataclass(frozen=True)
class SampleChange:
    """Sample ``index`` holds different content: its ``input`` (pixels/features) and/or its label
    (``label_before`` -> ``label_after``, equal when only the input changed)."""

    index: int
    input: bool
    label_before: int
    label_after: int

    @property
    def label_changed(self) -> bool:
        return self.label_before != self.label_after


@dataclass(frozen=True)
class VerifyReport:
    """What differs between the data and the manifest; ``ok`` when nothing does.

    Sample indices in ``changed`` exist on both sides; ``removed`` are manifest indices, ``added`` are
    current indices; ``moved`` pairs ``(manifest index, current index)`` of samples found elsewhere.
    ``samples_checked`` is False when only files were checked (the data could not be loaded).
    """

    changed_files: tuple[str, ...] = ()
    added_files: tuple[str, ...] = ()
    removed_files: tuple[str, ...] = ()
    files_checked: int = 0
    samples_checked: bool = True
    n_expected: int = 0
    n_found: int = 0
    changed: tuple[SampleChange, ...] = ()
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    moved: tuple[tuple[int, int], ...] = ()
    class_counts: tuple[tuple[str, int, int], ...] = ()
    metadata: tuple[str, ...] = ()
    merkle_root_expected: str = ""
    merkle_root_found: str = ""

    @property
    def files_ok(self) -> bool:
        return not (self.changed_files or self.added_files or self.removed_files)

    @property
    def ok(self) -> bool:
        return (
            self.files_ok
            and self.samples_checked
            and not (self.changed or self.added or self.removed or self.moved or self.metadata)
            and self.merkle_root_found == self.merkle_root_expected
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["class_counts"] = [{"class": c, "expected": e, "found": f} for c, e, f in self.class_counts]
        out["moved"] = [list(pair) for pair in self.moved]
        return {"ok": self.ok, **out}


def verify_files(
    manifest: Manifest,
    files: Mapping[str, str | Path],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[str, ...]]:
    """Compare ``files`` (``name -> path``) with the manifest's: ``changed`` (size or sha256 differs),
    ``added`` (not in the manifest) and ``removed`` (in the manifest, but not in ``files`` or missing)."""
    expected = {f.name: (f.size, f.sha256) for f in manifest.files}
    hashed = hash_files(files, progress)
    found = {name: rec for name, rec in hashed.items() if rec is not None}
    changed = tuple(sorted(n for n in expected.keys() & found.keys() if found[n] != expected[n]))
    return {
        "changed": changed,
        "added": tuple(sorted(found.keys() - expected.keys())),
        "removed": tuple(sorted(expected.keys() - found.keys())),
    }


def _match(old: list[bytes], new: list[bytes]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Unmatched manifest indices, unmatched current indices, and (old, new) pairs matched elsewhere."""
    m = min(len(old), len(new))
    a = np.frombuffer(b"".join(old[:m]), dtype="S32") if m else np.empty(0, "S32")
    b = np.frombuffer(b"".join(new[:m]), dtype="S32") if m else np.empty(0, "S32")
    differ = np.flatnonzero(a != b).tolist()  # vectorised: the common case is (almost) all equal
    rest_old = differ + list(range(m, len(old)))
    rest_new = differ + list(range(m, len(new)))
    waiting: dict[bytes, list[int]] = defaultdict(list)
    for i in reversed(rest_old):
        waiting[old[i]].append(i)  # reversed, so pop() hands out the lowest index first
    moved, unmatched_new = [], []
    for j in rest_new:
        slots = waiting.get(new[j])
        if slots:
            moved.append((slots.pop(), j))
        else:
            unmatched_new.append(j)
    unmatched_old = sorted(i for slots in waiting.values() for i in slots)
    return unmatched_old, unmatched_new, moved


def verify(
    dataset: Dataset,
    manifest: Manifest,
    *,
    files: Mapping[str, str | Path] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Compare ``dataset`` (x (N, ...), y (N,)) and its source ``files`` (default: those its loader
    recorded) with ``manifest``; see the module docstring for how samples are matched.

    Inputs are hashed in the manifest's dtype, so a float64 copy of float32 data still verifies.
    """
    file_diff = verify_files(manifest, source_files(dataset) if files is None else files, progress)
    old_leaves = list(manifest.leaves)
    inputs = input_hashes(dataset.x, manifest.dtype)
    labels = dataset.y.cpu().numpy()
    new_leaves = leaf_hashes(inputs, labels)
    unmatched_old, unmatched_new, moved = _match(old_leaves, new_leaves)
    in_place = sorted(set(unmatched_old) & set(unmatched_new))
    both = set(in_place)
    changed = tuple(
        SampleChange(
            i,
            inputs[i].hex() != manifest.input_sha256[i],
            manifest.labels[i],
            int(labels[i]),
        )
        for i in in_place
    )
    metadata = []
    if dataset.input_shape != manifest.shape:
        metadata.append(f"sample shape {manifest.shape} -> {dataset.input_shape}")
    if tuple(dataset.class_names) != manifest.class_names:
        metadata.append(f"classes {list(manifest.class_names)} -> {list(dataset.class_names)}")
    if tuple(float(b) for b in dataset.bounds) != manifest.bounds:
        metadata.append(f"bounds {manifest.bounds} -> {tuple(dataset.bounds)}")
    names = manifest.class_names + tuple(dataset.class_names[manifest.num_classes :])
    before = np.bincount(np.asarray(manifest.labels, dtype=np.int64), minlength=len(names))
    after = np.bincount(labels, minlength=len(names))
    counts = tuple(
        (names[k], int(before[k]), int(after[k])) for k in np.flatnonzero(before != after).tolist()
    )
    return VerifyReport(
        changed_files=file_diff["changed"],
        added_files=file_diff["added"],
        removed_files=file_diff["removed"],
        files_checked=len(manifest.files),
        n_expected=manifest.n_samples,
        n_found=len(dataset),
        changed=changed,
        added=tuple(j for j in unmatched_new if j not in both),
        removed=tuple(i for i in unmatched_old if i not in both),
        moved=tuple(moved),
        class_counts=counts,
        metadata=tuple(metadata),
        merkle_root_expected=manifest.merkle_root,
        merkle_root_found=merkle_root(new_leaves).hex(),
    )
