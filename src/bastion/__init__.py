"""bastion: red-team and harden PyTorch models.

Importing this package is cheap and has no side effects: submodules (and torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bastion.attacks.poisoning import make_poison
    from bastion.certify import IntervalBoundPropagation, Normalize, RandomizedSmoothing
    from bastion.data import load_dataset
    from bastion.data.dataset import Dataset
    from bastion.defenses import DefendedClassifier
    from bastion.defenses.training import TrainingConfig
    from bastion.defenses.training.harden import HardenResult, harden  # the function, not its module
    from bastion.detect import (
        STRIP,
        ActivationClustering,
        ConfidenceDetector,
        FeatureSqueezing,
        LabelNoise,
        NeuralCleanse,
        SpectralSignatures,
    )
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
    from bastion.provenance import build_manifest, drift_test
    from bastion.results import AttackResult, CertificationResult
    from bastion.threat import Norm, ThreatModel

# public name -> defining module; explicit, so the API is greppable and import stays lazy.
_EXPORTS = {
    "ActivationClustering": "bastion.detect",
    "AttackError": "bastion.errors",
    "AttackResult": "bastion.results",
    "BastionError": "bastion.errors",
    "CertificationError": "bastion.errors",
    "CertificationResult": "bastion.results",
    "Classifier": "bastion.model",
    "ConfidenceDetector": "bastion.detect",
    "DataError": "bastion.errors",
    "Dataset": "bastion.data.dataset",
    "DefendedClassifier": "bastion.defenses",
    "DefenseError": "bastion.errors",
    "DetectorError": "bastion.errors",
    "EvaluationResult": "bastion.evaluation",
    "FeatureSqueezing": "bastion.detect",
    "HardenResult": "bastion.defenses.training",
    "IntervalBoundPropagation": "bastion.certify",
    "LabelNoise": "bastion.detect",
    "ModelContractError": "bastion.errors",
    "NeuralCleanse": "bastion.detect",
    "Norm": "bastion.threat",
    "Normalize": "bastion.certify",
    "ProbabilityOutputWarning": "bastion.model",
    "RandomizedSmoothing": "bastion.certify",
    "STRIP": "bastion.detect",
    "SpectralSignatures": "bastion.detect",
    "StageResult": "bastion.evaluation",
    "ThreatModel": "bastion.threat",
    "ThreatModelError": "bastion.errors",
    "TorchClassifier": "bastion.model",
    "TrainingConfig": "bastion.defenses.training",
    "UnsafeArtifactError": "bastion.errors",
    "build_manifest": "bastion.provenance",
    "drift_test": "bastion.provenance",
    "evaluate": "bastion.evaluation",
    "harden": "bastion.defenses.training",
    "load_dataset": "bastion.data",
    "load_model": "bastion.loading",
    "make_poison": "bastion.attacks.poisoning",
}

__all__ = [
    "ActivationClustering",
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
    "LabelNoise",
    "ModelContractError",
    "NeuralCleanse",
    "Norm",
    "Normalize",
    "ProbabilityOutputWarning",
    "RandomizedSmoothing",
    "STRIP",
    "SpectralSignatures",
    "StageResult",
    "ThreatModel",
    "ThreatModelError",
    "TorchClassifier",
    "TrainingConfig",
    "UnsafeArtifactError",
    "__version__",
    "build_manifest",
    "drift_test",
    "evaluate",
    "harden",
    "load_dataset",
    "load_model",
    "make_poison",
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
