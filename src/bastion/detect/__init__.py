"""Detectors. Adversarial inputs: ``fit(model, clean_x)`` → ``score(x)`` → ``detect(x)``, ROC metrics, and the
adaptive attack every detector number must be reported next to (docs/detectors.md). Training-time threats:
training-data scanners (activation clustering, spectral signatures, label noise) and backdoor scans
(docs/poisoning.md)."""

from __future__ import annotations

from bastion.detect.activation_clustering import ActivationClustering
from bastion.detect.activations import FEATURES, PENULTIMATE, layer_activations, layer_names
from bastion.detect.adaptive import AdaptiveAttack, joint_success
from bastion.detect.base import Calibration, Detector, DetectorError, threshold_at_fpr
from bastion.detect.confidence import ConfidenceDetector
from bastion.detect.data_scan import ClassScan, DataScanner, DataScanResult
from bastion.detect.disagreement import Disagreement, scan_disagreement
from bastion.detect.feature_squeezing import FeatureSqueezing, default_squeezers
from bastion.detect.label_noise import LabelNoise
from bastion.detect.model_scan import ModelScanResult, anomaly_index, save_trigger_images
from bastion.detect.neural_cleanse import NeuralCleanse
from bastion.detect.roc import (
    RocCurve,
    evaluate_detector,
    roc_auc,
    roc_curve,
    successful_adversarials,
    tpr_at_fpr,
)
from bastion.detect.spectral import SpectralSignatures
from bastion.detect.strip import STRIP
from bastion.results import AdaptiveResult, DetectionResult

__all__ = [
    "ActivationClustering",
    "AdaptiveAttack",
    "AdaptiveResult",
    "Calibration",
    "ClassScan",
    "ConfidenceDetector",
    "DataScanResult",
    "DataScanner",
    "DetectionResult",
    "Detector",
    "DetectorError",
    "Disagreement",
    "FEATURES",
    "FeatureSqueezing",
    "LabelNoise",
    "ModelScanResult",
    "NeuralCleanse",
    "PENULTIMATE",
    "RocCurve",
    "STRIP",
    "SpectralSignatures",
    "anomaly_index",
    "default_squeezers",
    "evaluate_detector",
    "joint_success",
    "layer_activations",
    "layer_names",
    "roc_auc",
    "roc_curve",
    "save_trigger_images",
    "scan_disagreement",
    "successful_adversarials",
    "threshold_at_fpr",
    "tpr_at_fpr",
]
