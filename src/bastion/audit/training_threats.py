"""Training-time threats in the audit: a backdoor in the model, poison or flipped labels in its training
data, training data that no longer matches its manifest (findings ``BA401``-``BA404``).

Each part runs only when configured, after the evasion part, and answers in its own sub-block of the
report's ``training_threats``: ``model_scan`` (Neural Cleanse, Wang et al. 2019, on the audited clean
inputs), ``data_scan`` (activation clustering, Chen et al. 2018; spectral signatures, Tran et al. 2018;
or confident learning, Northcutt et al. 2021, on the training data through the audited model) and
``provenance`` (the training data against a sha256 manifest). A scan that cannot apply (a model without
gradients, inputs that are no images, a training set with another number of classes) is *refused*: the
reason is recorded and the audit goes on. The block holds summaries only: per-class rows, counts, and at
most :data:`~bastion.audit.training_scans.MAX_LISTED` indices or file names per list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bastion.audit.config import AuditConfig
from bastion.audit.findings import Finding, finding
from bastion.audit.report import RecoveredTrigger
from bastion.audit.training_manifest import provenance
from bastion.audit.training_scans import Part, Progress, data_scan, model_scan
from bastion.data.dataset import Dataset
from bastion.detect.data_scan import DataScanResult
from bastion.model import Classifier
from bastion.provenance import Manifest

__all__ = ["TrainingThreats", "audit_training_threats", "load_training", "training_block"]


@dataclass(frozen=True)
class TrainingThreats:
    """What :func:`audit_training_threats` found: the report's JSON-ready ``block``, the ``BA4xx``
    ``findings``, the ``checks`` that ran (passed or not; a refused scan runs none) and the ``triggers``
    Neural Cleanse recovered for the classes it flagged (for the HTML report)."""

    block: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[RecoveredTrigger] = field(default_factory=list)


def load_training(cfg: AuditConfig) -> tuple[Dataset | None, Manifest | None]:
    """The training data (its ``train`` split) and the manifest ``cfg`` names, each None when unset.

    Called before any attack, so a wrong path fails the audit at once (DataError), not after the attacks.
    """
    from bastion.data import load_dataset
    from bastion.provenance import load_manifest

    train = load_dataset(cfg.training_data, split="train") if cfg.training_data else None
    manifest = load_manifest(Path(cfg.training_manifest).expanduser()) if cfg.training_manifest else None
    return train, manifest


def training_block(cfg: AuditConfig, train: Dataset | None) -> dict[str, Any]:
    """The report's ``training_threats`` block with nothing measured yet (every sub-block null)."""
    return {
        "training_data": cfg.training_data,
        "n_training_samples": len(train) if train is not None else None,
        "model_scan": None,
        "data_scan": None,
        "provenance": None,
        "data_scans": [],
        "scan_disagreements": None,
    }


def audit_training_threats(
    network: Classifier,
    x: torch.Tensor,
    class_names: tuple[str, ...],
    train: Dataset | None,
    manifest: Manifest | None,
    cfg: AuditConfig,
    tick: Progress,
    *,
    differentiable: bool | None,
) -> TrainingThreats:
    """Run what ``cfg`` configures: ``scan_model`` on ``x`` (N, ...), the audited clean inputs (named by
    ``class_names``); ``scan_data`` and the manifest check on ``train`` (from :func:`load_training`).

    ``network`` is the audited model without any ``--defense`` transforms: a backdoor lives in its
    weights. ``differentiable`` is the pre-checks' verdict, None when the audit stopped before them
    (inputs outside the bounds, BA106). Refusals are recorded in the block, never raised.
    """
    out = TrainingThreats(block=training_block(cfg, train))
    parts: list[tuple[str, Callable[[], Part]]] = []
    if cfg.scan_model:
        parts.append(("model_scan", lambda: model_scan(network, x, class_names, cfg, tick, differentiable)))
    scans: dict[str, DataScanResult] = {}
    if train is not None:
        for method in cfg.scan_data_methods:
            parts.append(
                (f"data_scan:{method}", partial(data_scan, network, train, cfg, tick, method, scans))
            )
    if manifest is not None and train is not None:
        parts.append(("provenance", lambda: provenance(train, manifest, cfg, tick)))
    for key, run in parts:
        sub, findings, checks, triggers = run()
        if key.startswith("data_scan:"):  # every scan in data_scans; the first also under the 1.2 key
            out.block["data_scans"].append(sub)
            key = "data_scan"
        if out.block[key] is None:
            out.block[key] = sub
        out.findings.extend(findings)
        out.checks.extend(checks)
        out.triggers.extend(triggers)
    if len(scans) > 1:
        _compare_scans(out, scans)
    return out


def _compare_scans(out: TrainingThreats, scans: dict[str, DataScanResult]) -> None:
    """``BA405``: where the data scans that ran (two or more; a refused one did not) disagree about a
    class (:func:`bastion.detect.scan_disagreement`)."""
    from bastion.detect import scan_disagreement

    found = scan_disagreement(scans)
    out.block["scan_disagreements"] = [d.to_dict() for d in found]
    out.checks.append(
        {
            "code": "BA405",
            "threat": "training data",
            "passed": not found,
            "measured": {"scans": list(scans), "disagreements": len(found)},
        }
    )
    out.findings.extend(finding("BA405", d.message, label=d.label, kind=d.kind) for d in found)
