"""Robust accuracy in context: clean accuracy, balanced accuracy and MCC next to it, and the
degenerate-model flag.

A model that answers "good credit" for everyone is perfectly "robust" to an attacker who wants to
be accepted, and has ~70% accuracy on German Credit; robust accuracy alone rewards it. The report
puts balanced accuracy (mean per-class recall) and the Matthews correlation coefficient (Gorodkin's
multi-class form; 0 for a constant predictor) beside robust accuracy, and flags a model whose
predictions are (nearly) one class while the labels are not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bastion.errors import DataError
from bastion.tabular.model import TabularClassifier
from bastion.tabular.results import TabularAttackResult

__all__ = ["RobustnessReport", "balanced_accuracy", "matthews", "robustness_report"]


def _confusion(y: torch.Tensor, pred: torch.Tensor, k: int) -> torch.Tensor:
    c = torch.zeros(k, k, dtype=torch.float64)
    c.index_put_(
        (y.long().cpu(), pred.long().cpu()), torch.ones(len(y), dtype=torch.float64), accumulate=True
    )
    return c  # rows: true class, columns: predicted


def balanced_accuracy(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> float:
    """Mean recall over the classes present in ``y``."""
    c = _confusion(y, pred, num_classes)
    support = c.sum(dim=1)
    present = support > 0
    return float((c.diag()[present] / support[present]).mean()) if bool(present.any()) else 0.0


def matthews(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> float:
    """Matthews correlation coefficient (multi-class, Gorodkin 2004); 0.0 when undefined (constant)."""
    c = _confusion(y, pred, num_classes)
    n, correct = float(c.sum()), float(c.diag().sum())
    t, p = c.sum(dim=1), c.sum(dim=0)
    num = correct * n - float(t @ p)
    den = math.sqrt(max(n * n - float(p @ p), 0.0)) * math.sqrt(max(n * n - float(t @ t), 0.0))
    return num / den if den > 0 else 0.0


@dataclass(frozen=True)
class RobustnessReport:
    """Clean metrics on ``records``; ``robust_accuracy`` from the attack (None without one);
    ``majority_prediction``: share of the most frequent predicted class (``majority_label`` for the
    labels); ``degenerate``: predictions are (nearly) one class while the labels are not."""

    records: int
    clean_accuracy: float
    balanced_accuracy: float
    mcc: float
    robust_accuracy: float | None
    majority_prediction: float
    majority_label: float
    degenerate: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def robustness_report(
    model: TabularClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    result: TabularAttackResult | None = None,
    *,
    threshold: float = 0.95,
) -> RobustnessReport:
    """Metrics of ``model`` on records ``x`` (N, D) with labels ``y`` (N,), next to ``result``'s robust
    accuracy (an attack on the same records). ``degenerate`` when more than ``threshold`` of the
    predictions are one class while at most ``threshold`` of the labels are."""
    if not 0.5 <= threshold < 1.0:
        raise DataError(f"threshold is a share of predictions in [0.5, 1), got {threshold!r}")
    if len(x) != len(y) or not len(y):
        raise DataError(f"x and y must hold the same non-zero number of records, got {len(x)} and {len(y)}")
    if result is not None and len(result) != len(y):
        raise DataError(
            f"the attack result covers {len(result)} records, the data {len(y)}; attack the same records"
        )
    k = int(model.num_classes)
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 4096]).argmax(dim=1) for i in range(0, len(x), 4096)]).cpu()
    y = y.cpu()
    share_pred = float(torch.bincount(pred, minlength=k).max()) / len(y)
    share_label = float(torch.bincount(y, minlength=k).max()) / len(y)
    degenerate = share_pred > threshold and share_label <= threshold
    reason = (
        f"{share_pred:.1%} of predictions are one class while the most frequent label is {share_label:.1%}: "
        "robust accuracy says little about this model; look at balanced accuracy and MCC"
        if degenerate
        else ""
    )
    return RobustnessReport(
        records=len(y),
        clean_accuracy=float((pred == y).double().mean()),
        balanced_accuracy=balanced_accuracy(y, pred, k),
        mcc=matthews(y, pred, k),
        robust_accuracy=None if result is None else result.robust_accuracy,
        majority_prediction=share_pred,
        majority_label=share_label,
        degenerate=degenerate,
        reason=reason,
    )
