"""The audit's training-time scans, each measured and judged: :func:`model_scan` (``BA401``) and
:func:`data_scan` (``BA402``/``BA403``); the manifest check is :mod:`bastion.audit.training_manifest`
(see :mod:`bastion.audit.training_threats`). Each returns its sub-block, findings, checks run and
triggers; a refused part returns the reason in ``refused`` and runs no check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from bastion.audit.config import AuditConfig
from bastion.audit.findings import Finding, finding
from bastion.audit.report import RecoveredTrigger
from bastion.data.dataset import Dataset
from bastion.detect.data_scan import DataScanResult
from bastion.errors import DataError, DetectorError, ModelContractError
from bastion.model import Classifier

__all__ = ["MAX_LISTED", "NC_INPUTS", "REFUSALS", "Part", "Progress", "data_scan", "model_scan", "refused"]

Progress = Callable[[str, int, int], None]
Part = tuple[dict[str, Any], list[Finding], list[dict[str, Any]], list[RecoveredTrigger]]
"""A part's sub-block, its findings, the checks it ran and the triggers it recovered."""

MAX_LISTED = 20
"""At most this many sample indices (or file names) per list in the report; the counts are exact."""
NC_INPUTS = 500
"""Neural Cleanse reverse-engineers triggers on at most this many of the audited clean inputs."""
NC_FEW = 100
"""Below this many inputs the report warns: on zoo:digits-cnn (clean), 30 inputs gave a class an anomaly
index of 3.1 (flagged), while 100 or more stayed below 2 over the seeds tried."""
_MAX_TRIGGERS = 4  # flagged classes whose trigger the HTML report draws
REFUSALS = (DataError, DetectorError, ModelContractError)


def refused(sub: dict[str, Any], reason: str) -> Part:
    """``sub`` with the reason it was refused: no finding, no check run, no trigger."""
    sub["refused"] = reason
    return sub, [], [], []


def _name(names: tuple[str, ...], k: int) -> str:
    return names[k] if k < len(names) else str(k)


def model_scan(
    network: Classifier,
    x: torch.Tensor,
    class_names: tuple[str, ...],
    cfg: AuditConfig,
    tick: Progress,
    differentiable: bool | None,
) -> Part:
    """Neural Cleanse (the audit's seed) on the first ``NC_INPUTS`` audited clean inputs ``x`` (N, C, H, W)
    with gradients; refused (recorded, not raised) for a non-differentiable or non-image model."""
    from bastion.detect.neural_cleanse import NeuralCleanse

    scanner = NeuralCleanse(seed=cfg.seed)
    note = "scanned the network without the --defense transforms: a backdoor lives in its weights"
    sub: dict[str, Any] = {
        "method": "neural-cleanse",
        "refused": None,
        "note": note if cfg.defense else None,
        "params": scanner.params(),
    }
    if differentiable is None:
        return refused(sub, "not run: the audited inputs lie outside the model's bounds (BA106)")
    if not differentiable:
        return refused(
            sub,
            "Neural Cleanse optimises triggers through the model's input gradients, and this model is not "
            "differentiable (BA105)",
        )
    task = "scan-model: neural-cleanse"
    tick(task, 0, scanner.steps)
    try:
        result = scanner.scan(network, x[:NC_INPUTS], progress=lambda done, total: tick(task, done, total))
    except REFUSALS as exc:
        return refused(sub, str(exc))
    tick(task, scanner.steps, scanner.steps)
    n = min(int(x.shape[0]), NC_INPUTS)
    if n < NC_FEW:
        few = (
            f"only {n} clean inputs: triggers fitted to so few inputs can make a clean class stand out "
            f"(a false BA401 is likelier); audit at least {NC_FEW} (--limit)"
        )
        sub["note"] = f"{sub['note']}; {few}" if sub["note"] else few
    rows = result.to_dict()["classes"]
    for row in rows:
        row["name"] = _name(class_names, row["class"])
    flagged = list(result.flagged)
    sub.update(
        n_inputs=n,
        seconds=round(result.seconds, 3),
        threshold=result.threshold,
        suspected=result.suspected,
        flagged=flagged,
        classes=rows,
    )
    measured = {"flagged": flagged, "max_anomaly_index": max(r["anomaly_index"] for r in rows)}
    ran = [{"code": "BA401", "threat": "model", "passed": not flagged, "measured": measured}]
    if not flagged:
        return sub, [], ran, []
    named = "; ".join(
        f"class {rows[k]['name']} (anomaly index {rows[k]['anomaly_index']:.2f}, trigger mask L1 "
        f"{rows[k]['mask_l1']:.1f})"
        for k in flagged
    )
    median = float(result.mask_l1.median())
    detail = (
        f"Neural Cleanse flags {named}, against a median trigger mask L1 of {median:.1f} over the classes"
    )
    evidence: dict[str, Any] = {
        "classes": flagged,
        "anomaly_index": [rows[k]["anomaly_index"] for k in flagged],
    }
    triggers = [
        RecoveredTrigger(
            label=k,
            name=rows[k]["name"],
            mask=result.mask[k].detach().cpu(),
            pattern=result.pattern[k].detach().cpu(),
            bounds=result.bounds,
            mask_l1=rows[k]["mask_l1"],
            anomaly_index=rows[k]["anomaly_index"],
        )
        for k in flagged[:_MAX_TRIGGERS]
    ]
    return sub, [finding("BA401", detail, **evidence)], ran, triggers


def data_scan(
    network: Classifier,
    train: Dataset,
    cfg: AuditConfig,
    tick: Progress,
    method: str,
    results: dict[str, DataScanResult] | None = None,
) -> Part:
    """The scan ``method`` (one of ``cfg.scan_data``) on the whole training set, seen through ``network``
    (label-noise retrains it). The raw result also goes into ``results[method]`` when given (the scans
    are compared afterwards, ``BA405``); a refused scan leaves nothing there."""
    from bastion.detect import ActivationClustering, LabelNoise, SpectralSignatures

    sub: dict[str, Any] = {"method": method, "refused": None, "note": None, "params": {}}
    if method == "label-noise":
        sub["note"] = (
            "retrained the model's architecture from scratch once per fold (cross-validation); the audited "
            "weights were not used"
        )
    else:
        sub["note"] = (
            f"read the audited model's activations of layer {cfg.scan_layer!r} for every training sample "
            "(scan_layer / --scan-layer picks another; bastion.detect.layer_names lists them)"
        )
    task = f"scan-data: {method}"
    start = time.perf_counter()
    tick(task, 0, 1)
    try:
        if method == "label-noise":
            noise = LabelNoise(seed=cfg.seed)
            result = noise.scan(network, train, progress=lambda done, total: tick(task, done, total))
        else:
            kind = ActivationClustering if method == "ac" else SpectralSignatures
            result = kind(seed=cfg.seed, layer=cfg.scan_layer).scan(network, train)
    except REFUSALS as exc:
        return refused(sub, str(exc))
    tick(task, 1, 1)
    if results is not None:
        results[method] = result
    summary = result.to_dict()
    classes = [{**row, "name": _name(train.class_names, row["label"])} for row in summary["classes"]]
    sub.update(
        params=summary["params"],
        seconds=round(time.perf_counter() - start, 3),
        statistic="noise share" if method == "label-noise" else "separation (SD)",
        threshold=summary["threshold"],
        n_samples=summary["n_samples"],
        n_flagged=summary["n_flagged"],
        suspected=summary["suspected"],
        verdict=summary["verdict"],
        classes=classes,
        flagged_indices=summary["flagged_indices"][:MAX_LISTED],
    )
    code = "BA403" if method == "label-noise" else "BA402"
    suspicious = [c for c in classes if c["suspicious"]]
    measured: dict[str, Any] = {
        "suspicious_classes": [c["label"] for c in suspicious],
        "n_flagged": sub["n_flagged"],
    }
    ran = [{"code": code, "threat": "training data", "passed": not suspicious, "measured": measured}]
    if not suspicious:
        return sub, [], ran, []
    per_class = ", ".join(f"class {c['name']}: {c['n_flagged']} of {c['n']}" for c in suspicious)
    detail = f"{method} flags {sub['n_flagged']} of {sub['n_samples']} training samples ({per_class})"
    return sub, [finding(code, detail, **measured)], ran, []
