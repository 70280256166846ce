"""Certified robustness in the audit: a proven lower bound beside the attacks' upper bound.

The attacks' adaptive robust accuracy can only overstate robustness (a stronger attack may find more);
a certificate can only understate it. Interval bound propagation (linf) certifies the network the
attacks ran on, so the truth lies between the two numbers, and an input it certifies that an attack
broke is a soundness bug (``BA209``). Randomized smoothing (l2) certifies the *smoothed* classifier (the
majority vote of the network under Gaussian noise), not the network itself: its number stands beside
the attacks', it does not bound them, and no ``BA209`` is computed for it.

Threats in the other norm are "not applicable". IBP refusing the model (a layer it cannot bound, a
model behind a defense) is recorded, not raised. Smoothing certifies once (a radius per input) and
every l2 threat reads its certified accuracy off that one certificate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from bastion.audit.cascade import threat_label
from bastion.audit.config import AuditConfig, parse_certify
from bastion.audit.findings import Finding, finding
from bastion.certify import IntervalBoundPropagation, RandomizedSmoothing
from bastion.certify._ibp_check import SELF_CHECK_FAILED
from bastion.errors import CertificationError
from bastion.model import Classifier
from bastion.results import CertificationResult
from bastion.threat import Norm, ThreatModel

__all__ = ["Audited", "audit_certification", "certification_block"]

Progress = Callable[[str, int, int], None]

Audited = tuple[ThreatModel, float, torch.Tensor]
"""An audited threat, its adaptive robust accuracy and which inputs (N,) bool the attacks fooled."""

_NORM = {"ibp": Norm.LINF, "smoothing": Norm.L2}
_N_SELECT = 100


def _certifier(cfg: AuditConfig) -> IntervalBoundPropagation | RandomizedSmoothing:
    method, sigma = parse_certify(cfg.certify or "")
    if method == "ibp":
        return IntervalBoundPropagation(batch_size=cfg.batch_size, seed=cfg.seed)
    return RandomizedSmoothing(
        float(sigma or 0), _N_SELECT, cfg.certify_n, cfg.certify_alpha, batch_size=cfg.batch_size
    )


def certification_block(cfg: AuditConfig, note: str | None = None) -> dict[str, Any]:
    """The report's ``certification`` block with no threat measured (``note`` says why, if none will be)."""
    return _block(_certifier(cfg), note)


def _block(certifier: IntervalBoundPropagation | RandomizedSmoothing, note: str | None) -> dict[str, Any]:
    method = "ibp" if isinstance(certifier, IntervalBoundPropagation) else "smoothing"
    return {
        "method": method,
        "norm": _NORM[method].value,
        "params": certifier.params(),
        "refused": None,
        "note": note,
        "seconds": 0.0,
        "threats": [],
    }


def audit_certification(
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    audited: list[Audited],
    cfg: AuditConfig,
    tick: Progress,
) -> tuple[dict[str, Any], list[Finding], list[dict[str, Any]]]:
    """Certify the audited inputs ``x`` (N, ...) at every audited threat in the method's norm.

    Returns the JSON-ready block (one row per audited threat), the ``BA209`` findings and checks run.
    """
    certifier = _certifier(cfg)
    block = _block(certifier, None)
    norm = _NORM[block["method"]]
    findings: list[Finding] = []
    ran: list[dict[str, Any]] = []
    smoothed: CertificationResult | None = None
    for threat, robust_accuracy, fooled in audited:
        label = threat_label(threat)
        row: dict[str, Any] = {
            "label": label,
            "norm": threat.norm.value,
            "epsilon": threat.epsilon,
            "status": "measured",
            "note": None,
            "robust_accuracy": robust_accuracy,
        }
        block["threats"].append(row)
        if threat.norm is not norm:
            row.update(status="not applicable", note=f"{block['method']} certifies {norm.value} threats only")
            continue
        if block["refused"]:
            row.update(status="refused", note=block["refused"])
            continue
        try:
            result = smoothed if smoothed is not None else _certify(certifier, clf, x, threat, cfg.seed, tick)
        except CertificationError as exc:
            block["refused"] = str(exc)
            row.update(status="refused", note=str(exc))
            if str(exc).startswith(SELF_CHECK_FAILED):  # not a layer IBP lacks: a forward it cannot see
                ran.append({"code": "BA211", "threat": label, "passed": False, "measured": {}})
                findings.append(finding("BA211", str(exc), threat=label))
            continue
        if result is not smoothed:
            block["seconds"] += result.seconds
        if isinstance(certifier, RandomizedSmoothing):
            smoothed = result  # a radius per input: one certificate serves every l2 epsilon
        certified = result.certified(y, threat.epsilon)
        row.update(
            certified_accuracy=result.certified_accuracy(y, threat.epsilon),
            clean_accuracy=result.certified_accuracy(y, 0.0),
            n_certified=int(certified.sum()),
            abstentions=int(result.abstained.sum()),
            certified_broken=None,
            seconds=result.seconds,
            params=result.params,
        )
        if isinstance(certifier, IntervalBoundPropagation):
            ran.append({"code": "BA211", "threat": label, "passed": True, "measured": {}})
            broken = int((certified & fooled.to(certified.device)).sum())
            row["certified_broken"] = broken
            measured = {"certified": row["n_certified"], "broken": broken}
            ran.append({"code": "BA209", "threat": label, "passed": broken == 0, "measured": measured})
            if broken:
                detail = (
                    f"{broken} of the {row['n_certified']} inputs IBP certified at {label} were fooled by "
                    "the audit's attacks"
                )
                findings.append(finding("BA209", detail, threat=label, **measured))
    if all(row["status"] == "not applicable" for row in block["threats"]):
        name = "IBP" if block["method"] == "ibp" else "randomized smoothing"
        block["note"] = (
            f"nothing was certified: {name} certifies {norm.value} threats and none was audited; "
            f"add one (--norm {norm.value} --epsilon ...)"
        )
    return block, findings, ran


def _certify(
    certifier: IntervalBoundPropagation | RandomizedSmoothing,
    clf: Classifier,
    x: torch.Tensor,
    threat: ThreatModel,
    seed: int,
    tick: Progress,
) -> CertificationResult:
    n = int(x.shape[0])
    if isinstance(certifier, IntervalBoundPropagation):
        task = f"{threat_label(threat)}: certify ibp"
        tick(task, 0, n)
        result = certifier.certify(cast(Any, clf), x, threat)  # refuses, saying why, what is no network
    else:
        task = f"certify smoothing σ={certifier.sigma:g}"
        per_input = certifier.n_select + certifier.n_estimate  # noisy draws per input
        tick(task, 0, n)
        result = certifier.certify(
            clf, x, seed=seed, progress=lambda done, _: tick(task, done // per_input, n)
        )
    tick(task, n, n)
    return result
