"""Adversarial-input detectors: ``fit(model, clean_x)`` → ``score(x)`` → ``detect(x)``, ROC metrics, and
the adaptive attack every detector number must be reported next to (see docs/detectors.md)."""

from __future__ import annotations

from bastion.detect.adaptive import AdaptiveAttack, joint_success
from bastion.detect.base import Calibration, Detector, DetectorError, threshold_at_fpr
from bastion.detect.confidence import ConfidenceDetector
from bastion.detect.feature_squeezing import FeatureSqueezing, default_squeezers
from bastion.detect.roc import (
    RocCurve,
    evaluate_detector,
    roc_auc,
    roc_curve,
    successful_adversarials,
    tpr_at_fpr,
)
from bastion.results import AdaptiveResult, DetectionResult

__all__ = [
    "AdaptiveAttack",
    "AdaptiveResult",
    "Calibration",
    "ConfidenceDetector",
    "DetectionResult",
    "Detector",
    "DetectorError",
    "FeatureSqueezing",
    "RocCurve",
    "default_squeezers",
    "evaluate_detector",
    "joint_success",
    "roc_auc",
    "roc_curve",
    "successful_adversarials",
    "threshold_at_fpr",
    "tpr_at_fpr",
]
