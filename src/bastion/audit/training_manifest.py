"""Training data against its manifest in the audit (``BA404``): every sample and source file hashed and
compared with the sha256 manifest ``bastion data manifest`` wrote while the data was trusted
(:func:`bastion.provenance.verify`). The report keeps exact counts and the first ``MAX_LISTED`` of each
list; a manifest of another split is refused rather than compared (every sample would differ)."""

from __future__ import annotations

import time
from typing import Any

from bastion.audit.config import AuditConfig
from bastion.audit.findings import finding
from bastion.audit.training_scans import MAX_LISTED, REFUSALS, Part, Progress, refused
from bastion.data.dataset import Dataset
from bastion.provenance import Manifest

__all__ = ["provenance"]

_LISTS = ("changed", "added", "removed", "moved", "changed_files", "added_files", "removed_files")


def provenance(train: Dataset, manifest: Manifest, cfg: AuditConfig, tick: Progress) -> Part:
    """The training data and its source files against ``manifest`` (``bastion data manifest``)."""
    from bastion.provenance import verify

    sub: dict[str, Any] = {"manifest": cfg.training_manifest, "refused": None, "note": None}
    if manifest.split not in (None, "train"):
        return refused(
            sub,
            f"the manifest pins the {manifest.split!r} split of {manifest.name}, but the audit verifies the "
            f"training data (the train split); rebuild it with `bastion data manifest {cfg.training_data} "
            "--split train`",
        )
    task = "verify training data"
    start = time.perf_counter()
    tick(task, 0, 1)
    try:
        report = verify(train, manifest, progress=lambda done, total: tick(task, done, total))
    except REFUSALS as exc:
        return refused(sub, str(exc))
    tick(task, 1, 1)
    if not report.files_checked:
        sub["note"] = "the manifest lists no source files (e.g. digits ships with scikit-learn): samples only"
    counts: dict[str, Any] = {
        "changed": len(report.changed),
        "added": len(report.added),
        "removed": len(report.removed),
        "moved": len(report.moved),
        "files_changed": len(report.changed_files),
        "files_added": len(report.added_files),
        "files_removed": len(report.removed_files),
    }
    full = report.to_dict()
    sub.update(
        ok=report.ok,
        seconds=round(time.perf_counter() - start, 3),
        files_checked=report.files_checked,
        n_expected=report.n_expected,
        n_found=report.n_found,
        counts=counts,
        merkle_root_expected=report.merkle_root_expected,
        merkle_root_found=report.merkle_root_found,
        class_counts=full["class_counts"],
        metadata=list(report.metadata),
        **{key: list(full[key])[:MAX_LISTED] for key in _LISTS},
    )
    ran = [{"code": "BA404", "threat": "training data", "passed": report.ok, "measured": counts}]
    if report.ok:
        return sub, [], ran, []
    samples = ", ".join(f"{counts[k]} {k}" for k in ("changed", "added", "removed", "moved"))
    files = ", ".join(f"{counts['files_' + k]} {k}" for k in ("changed", "added", "removed"))
    detail = f"samples: {samples}; source files: {files} (of {report.files_checked} in the manifest)"
    if report.metadata:
        detail += "; " + "; ".join(report.metadata)
    return sub, [finding("BA404", detail, **counts)], ran, []
