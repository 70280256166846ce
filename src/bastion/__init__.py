"""bastion: red-team and harden PyTorch models.

Importing this package is cheap and has no side effects: submodules (and torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bastion.certify import IntervalBoundPropagation, RandomizedSmoothing
    from bastion.data import load_dataset
    from bastion.data.dataset import Dataset
    from bastion.defenses import DefendedClassifier
    from bastion.defenses.training import HardenResult, TrainingConfig, harden
    from bastion.detect import ConfidenceDetector, FeatureSqueezing
    from bastion.errors import (
        AttackError,
        BastionError,
        CertificationError,
        DataError,
        DefenseError,
        DetectorError,
        ModelContractError,
        ThreatModelError,
        UnsafeArtifactError,
    )
    from bastion.evaluation import EvaluationResult, StageResult, evaluate
    from bastion.loading import load_model
    from bastion.model import Classifier, ProbabilityOutputWarning, TorchClassifier
    from bastion.results import AttackResult, CertificationResult
    from bastion.threat import Norm, ThreatModel

# public name -> defining module; explicit, so the API is greppable and import stays lazy.
_EXPORTS = {
    "AttackError": "bastion.errors",
    "AttackResult": "bastion.results",
    "BastionError": "bastion.errors",
    "CertificationError": "bastion.errors",
    "CertificationResult": "bastion.results",
    "Classifier": "bastion.model",
    "DataError": "bastion.errors",
    "Dataset": "bastion.data.dataset",
    "DefendedClassifier": "bastion.defenses",
    "DefenseError": "bastion.errors",
    "DetectorError": "bastion.errors",
    "ConfidenceDetector": "bastion.detect",
    "FeatureSqueezing": "bastion.detect",
    "EvaluationResult": "bastion.evaluation",
    "HardenResult": "bastion.defenses.training",
    "IntervalBoundPropagation": "bastion.certify",
    "ModelContractError": "bastion.errors",
    "Norm": "bastion.threat",
    "ProbabilityOutputWarning": "bastion.model",
    "RandomizedSmoothing": "bastion.certify",
    "StageResult": "bastion.evaluation",
    "ThreatModel": "bastion.threat",
    "ThreatModelError": "bastion.errors",
    "TorchClassifier": "bastion.model",
    "TrainingConfig": "bastion.defenses.training",
    "UnsafeArtifactError": "bastion.errors",
    "evaluate": "bastion.evaluation",
    "harden": "bastion.defenses.training",
    "load_dataset": "bastion.data",
    "load_model": "bastion.loading",
}

__all__ = [
    "AttackError",
    "AttackResult",
    "BastionError",
    "CertificationError",
    "CertificationResult",
    "Classifier",
    "ConfidenceDetector",
    "DataError",
    "Dataset",
    "DefendedClassifier",
    "DefenseError",
    "DetectorError",
    "EvaluationResult",
    "FeatureSqueezing",
    "HardenResult",
    "IntervalBoundPropagation",
    "ModelContractError",
    "Norm",
    "ProbabilityOutputWarning",
    "RandomizedSmoothing",
    "StageResult",
    "ThreatModel",
    "ThreatModelError",
    "TorchClassifier",
    "TrainingConfig",
    "UnsafeArtifactError",
    "__version__",
    "evaluate",
    "harden",
    "load_dataset",
    "load_model",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
