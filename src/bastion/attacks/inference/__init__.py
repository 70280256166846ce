"""Inference attacks: what a deployed model leaks about its training data (membership, inversion).

Every attack here is black-box unless it says otherwise: it reads the victim only through
``softmax(model(x))`` or its argmax, so it runs unchanged under an output policy
(:class:`bastion.defenses.output_policy.PolicyClassifier`) and on a remote model (:mod:`bastion.remote`).
Names import lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.attacks.inference.attribute import (
        AttributeInference,
        AttributeLeak,
        AttributeResult,
        attribute_leak,
    )
    from bastion.attacks.inference.base import MembershipAttack
    from bastion.attacks.inference.inversion_metrics import InversionQuality, inversion_quality, ssim
    from bastion.attacks.inference.label_only import BoundaryDistance, LabelOracle
    from bastion.attacks.inference.lira import LiRA
    from bastion.attacks.inference.metrics import (
        MembershipResult,
        RocCurve,
        balanced_accuracy,
        roc_auc,
        roc_curve,
        tpr_at_fpr,
    )
    from bastion.attacks.inference.mi_face import MIFace, MIFaceResult
    from bastion.attacks.inference.references import (
        Assignment,
        ReferenceModels,
        load_references,
        train_reference,
        train_references,
    )
    from bastion.attacks.inference.rmia import RMIA
    from bastion.attacks.inference.shadow import ShadowModels
    from bastion.attacks.inference.threshold import LossThreshold

_WHERE = {
    "Assignment": "references",
    "AttributeInference": "attribute",
    "AttributeLeak": "attribute",
    "AttributeResult": "attribute",
    "BoundaryDistance": "label_only",
    "InversionQuality": "inversion_metrics",
    "LabelOracle": "label_only",
    "LiRA": "lira",
    "LossThreshold": "threshold",
    "MIFace": "mi_face",
    "MIFaceResult": "mi_face",
    "MembershipAttack": "base",
    "MembershipResult": "metrics",
    "RMIA": "rmia",
    "ReferenceModels": "references",
    "RocCurve": "metrics",
    "ShadowModels": "shadow",
    "attribute_leak": "attribute",
    "balanced_accuracy": "metrics",
    "inversion_quality": "inversion_metrics",
    "load_references": "references",
    "roc_auc": "metrics",
    "roc_curve": "metrics",
    "ssim": "inversion_metrics",
    "tpr_at_fpr": "metrics",
    "train_reference": "references",
    "train_references": "references",
}

__all__ = [
    "Assignment",
    "AttributeInference",
    "AttributeLeak",
    "AttributeResult",
    "BoundaryDistance",
    "InversionQuality",
    "LabelOracle",
    "LiRA",
    "LossThreshold",
    "MIFace",
    "MIFaceResult",
    "MembershipAttack",
    "MembershipResult",
    "RMIA",
    "ReferenceModels",
    "RocCurve",
    "ShadowModels",
    "attribute_leak",
    "balanced_accuracy",
    "inversion_quality",
    "load_references",
    "roc_auc",
    "roc_curve",
    "ssim",
    "tpr_at_fpr",
    "train_reference",
    "train_references",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"bastion.attacks.inference.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
