"""An adversarial-input detector in the audit: how many of the audit's adversarials it flags, and how
many an adaptive attack gets past it.

The detector is fitted on half of the audited clean inputs (even positions) at the configured false-
positive rate and measured on the other half, so the reported FPR is held out. Its detection rate is
measured on the adversarials the audit found for the threat; the adaptive attack (PGD on the margin and
the detector's score together, :class:`bastion.detect.AdaptiveAttack`) runs on up to ``check_samples``
correctly classified inputs. A detector number without the adaptive one means little (Carlini & Wagner
2017, "Adversarial Examples Are Not Easily Detected").
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bastion.audit.config import AuditConfig
from bastion.audit.probes import Clock
from bastion.detect import AdaptiveAttack, ConfidenceDetector, Detector, FeatureSqueezing, evaluate_detector
from bastion.model import Classifier
from bastion.threat import ThreatModel

__all__ = ["DETECTORS", "audit_detector", "make_detector"]

DETECTORS = ("feature-squeezing", "msp", "energy")


def make_detector(name: str, fpr: float) -> Detector:
    if name == "feature-squeezing":
        return FeatureSqueezing(fpr=fpr)
    return ConfidenceDetector(name, fpr=fpr)


def audit_detector(
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    threat: ThreatModel,
    x_adv: torch.Tensor,
    fooled: torch.Tensor,
    cfg: AuditConfig,
    clock: Clock,
    seed: int,
) -> dict[str, Any]:
    """The detector's row for one threat (a JSON-ready dict); ``fooled`` (N,) marks which ``x_adv`` count."""
    if cfg.detector is None:
        raise ValueError("audit_detector needs cfg.detector")
    detector = make_detector(cfg.detector, cfg.detector_fpr)
    positions = torch.arange(x.shape[0], device=x.device)
    calibrate, held_out = x[positions % 2 == 0], x[positions % 2 == 1]
    detector.fit(clf, calibrate)
    row: dict[str, Any] = {"detector": cfg.detector, "fpr": cfg.detector_fpr, "threshold": detector.threshold}
    row["n_clean_held_out"] = int(held_out.shape[0])
    row["n_adversarial"] = int(fooled.sum())
    if int(fooled.sum()) > 0:
        res = evaluate_detector(detector, held_out, x_adv[fooled])
        row.update(
            auc=res.auc,
            tpr_at_1pct=res.tpr_at_1pct,
            tpr_at_5pct=res.tpr_at_5pct,
            detection_rate=res.detection_rate,
            false_positive_rate=res.false_positive_rate,
        )
    targets = correct.nonzero().flatten()[: cfg.check_samples]
    if targets.numel():
        attack = AdaptiveAttack(steps=50)
        start = time.perf_counter()
        adaptive = attack(detector, x[targets], y[targets], threat, seed=seed)
        seconds = time.perf_counter() - start
        clock.attack_seconds += seconds
        clock.log.append(
            {"attack": "adaptive-pgd", "purpose": "detector", "threat": str(threat), "seconds": seconds}
        )
        row.update(
            adaptive_attacked=int(targets.numel()),
            adaptive_fools_classifier=adaptive.classifier_success_rate,
            adaptive_evasion_rate=adaptive.evasion_rate,
            adaptive_params=attack.params(),
        )
    return row
