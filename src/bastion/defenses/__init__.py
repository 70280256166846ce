"""Defenses: input transformations with BPDA surrogates, defended classifiers and their evaluation, and
output policies (what a deployed model releases: probabilities, top-k, rounded, labels only).

>>> from bastion.defenses import DefendedClassifier, evaluate_defense
>>> defended = DefendedClassifier(model, "jpeg:75,bits:4")          # doctest: +SKIP
>>> result = evaluate_defense(model, x, y, threat, "resize-pad")    # doctest: +SKIP
>>> result.naive.robust_accuracy, result.adaptive.robust_accuracy   # doctest: +SKIP
"""

from __future__ import annotations

from bastion.defenses.defended import DefendedClassifier
from bastion.defenses.evaluation import DefenseEvaluation, evaluate_defense
from bastion.defenses.output_policy import OutputPolicy, PolicyClassifier
from bastion.defenses.transforms import (
    JPEG,
    BitDepth,
    DefenseError,
    MedianSmoothing,
    RandomResizePad,
    Transform,
    available_transforms,
    parse_defense,
)

__all__ = [
    "BitDepth",
    "DefendedClassifier",
    "DefenseError",
    "DefenseEvaluation",
    "JPEG",
    "MedianSmoothing",
    "OutputPolicy",
    "PolicyClassifier",
    "RandomResizePad",
    "Transform",
    "available_transforms",
    "evaluate_defense",
    "parse_defense",
]
