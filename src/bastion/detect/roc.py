"""ROC curves, AUC and TPR at a fixed FPR for detectors; :func:`evaluate_detector`.

Convention everywhere: an input is flagged when its score is strictly greater than the threshold, and
clean inputs are the negatives, adversarials the positives. Scores are 1-D tensors or sequences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from bastion.detect.base import Detector, as_scores, threshold_at_fpr
from bastion.errors import DataError
from bastion.evaluation import EvaluationResult
from bastion.model import predict
from bastion.results import DetectionResult

__all__ = ["RocCurve", "evaluate_detector", "roc_auc", "roc_curve", "successful_adversarials", "tpr_at_fpr"]

Scores = torch.Tensor | Sequence[float]


class RocCurve(NamedTuple):
    """Points of the empirical ROC curve, float64 tensors of one length: detecting ``score > thresholds[i]``
    gives false-positive rate ``fpr[i]`` and true-positive rate ``tpr[i]``. ``thresholds`` run from the
    highest score (point (0, 0)) down to ``-inf`` (point (1, 1))."""

    fpr: torch.Tensor
    tpr: torch.Tensor
    thresholds: torch.Tensor


def _above(sorted_scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Fraction of ``sorted_scores`` (ascending) strictly above each threshold."""
    n = sorted_scores.numel()
    return (n - torch.searchsorted(sorted_scores, thresholds, right=True)).double() / n


def roc_curve(clean_scores: Scores, adv_scores: Scores) -> RocCurve:
    """The ROC curve of clean (negative) vs adversarial (positive) scores, one point per distinct score."""
    clean = as_scores(clean_scores, "clean scores").sort().values
    adv = as_scores(adv_scores, "adversarial scores").sort().values
    distinct = torch.unique(torch.cat([clean, adv])).flip(0)
    thresholds = torch.cat([distinct, distinct.new_tensor([-math.inf])])
    return RocCurve(_above(clean, thresholds), _above(adv, thresholds), thresholds)


def roc_auc(clean_scores: Scores, adv_scores: Scores) -> float:
    """Area under the ROC curve: P(adv score > clean score) + P(equal) / 2 (Mann-Whitney U / (n m)).

    0.5 is chance; 1.0 separates every adversarial from every clean input.
    """
    clean = as_scores(clean_scores, "clean scores").sort().values
    adv = as_scores(adv_scores, "adversarial scores")
    below = torch.searchsorted(clean, adv, right=False)  # clean scores < each adversarial score
    at_or_below = torch.searchsorted(clean, adv, right=True)
    return float((below + at_or_below).double().sum() / (2 * clean.numel() * adv.numel()))


def tpr_at_fpr(clean_scores: Scores, adv_scores: Scores, fpr: float) -> float:
    """Fraction of adversarials flagged at the threshold :func:`threshold_at_fpr` picks on the clean
    scores: the highest TPR whose FPR on these clean scores is at most ``fpr``."""
    threshold = threshold_at_fpr(clean_scores, fpr)
    return float((as_scores(adv_scores, "adversarial scores") > threshold).double().mean())


def successful_adversarials(evaluation: EvaluationResult) -> torch.Tensor:
    """The cascade's adversarials that count (M, ...): inputs the model classified correctly and an
    attack then fooled. Clean errors are not adversarials and are left out."""
    return evaluation.x_adv[evaluation.clean_correct & ~evaluation.robust]


def evaluate_detector(
    detector: Detector,
    x_clean: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    y_adv: torch.Tensor | None = None,
) -> DetectionResult:
    """Score held-out clean inputs ``x_clean`` (N, ...) and adversarials ``x_adv`` (M, ...) with a fitted
    ``detector``; AUC, TPR at 1% and 5% FPR, and the rates at the detector's own threshold.

    ``x_clean`` must be disjoint from the data the detector was fitted on. Only adversarials that fool
    the model should count: pass the true labels ``y_adv`` (M,) to drop the others, or take them from a
    cascade with :func:`successful_adversarials`.
    """
    if y_adv is not None:
        if y_adv.shape != (x_adv.shape[0],):
            raise DataError(
                f"y_adv must have shape ({x_adv.shape[0]},) to match x_adv, got {tuple(y_adv.shape)}"
            )
        fooled = predict(detector.model, x_adv).argmax(dim=1) != y_adv.to(x_adv.device)
        x_adv = x_adv[fooled]
    if x_adv.shape[0] == 0:
        raise DataError(
            "no successful adversarials to evaluate the detector on; attack with a larger epsilon"
        )
    clean, adv = detector.score(x_clean), detector.score(x_adv)
    threshold = detector.threshold
    return DetectionResult(
        detector=repr(detector),
        auc=roc_auc(clean, adv),
        tpr_at_1pct=tpr_at_fpr(clean, adv, 0.01),
        tpr_at_5pct=tpr_at_fpr(clean, adv, 0.05),
        threshold=threshold,
        detection_rate=float((adv > threshold).double().mean()),
        false_positive_rate=float((clean > threshold).double().mean()),
        clean_scores=clean,
        adv_scores=adv,
    )
