"""How well a backdoor works: clean accuracy (the model still does its job) and attack success rate.

The attack success rate is the share of triggered test inputs the model assigns to the target class,
over test inputs whose true label is *not* the target (counting those would credit the backdoor with
the model's ordinary accuracy on the target class) — the definition of Gu et al. 2017 and later work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bastion.attacks.base import check_batch
from bastion.attacks.poisoning.triggers import Trigger
from bastion.data.dataset import Dataset
from bastion.errors import DataError
from bastion.model import Classifier, as_classifier

__all__ = ["BackdoorEvaluation", "attack_success_rate", "clean_accuracy", "evaluate_backdoor"]


@torch.no_grad()
def _labels(clf: Classifier, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted labels (N,) on ``x``'s device, in batches moved to the model's device."""
    device = getattr(clf, "device", x.device)
    parts = [
        clf(x[i : i + batch_size].to(device)).argmax(1).to(x.device) for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(parts)


def _checked(model: Classifier | nn.Module, x: torch.Tensor, y: torch.Tensor) -> Classifier:
    clf = as_classifier(model)
    check_batch(clf, x, doing="evaluating")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    return clf


def clean_accuracy(
    model: Classifier | nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512
) -> float:
    """Share of ``x`` (N, ...) the model labels ``y`` (N,)."""
    clf = _checked(model, x, y)
    return float((_labels(clf, x, batch_size) == y.to(x.device)).float().mean())


def attack_success_rate(
    model: Classifier | nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    trigger: Trigger,
    target: int,
    *,
    batch_size: int = 512,
) -> float:
    """Share of triggered inputs classified as ``target``, over the inputs with ``y != target``.

    ``x`` (N, ...) clean test inputs inside the model's bounds, ``y`` (N,) their true labels; the trigger
    is applied here (with the model's bounds). DataError when every input is of the target class.
    """
    clf = _checked(model, x, y)
    keep = y.to(x.device) != target
    if not bool(keep.any()):
        raise DataError(f"every input is of the target class {target}: no input left to trigger")
    triggered = trigger.apply(x[keep], clf.bounds)
    return float((_labels(clf, triggered, batch_size) == target).float().mean())


@dataclass(frozen=True)
class BackdoorEvaluation:
    """Clean accuracy on all ``n_clean`` inputs; attack success rate on the ``n_triggered`` non-target
    ones."""

    clean_accuracy: float
    attack_success_rate: float
    n_clean: int
    n_triggered: int
    target: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_backdoor(
    model: Classifier | nn.Module, data: Dataset, trigger: Trigger, target: int, *, batch_size: int = 512
) -> BackdoorEvaluation:
    """Both numbers on a clean test ``data`` set (the model's bounds must hold the data)."""
    clf = as_classifier(model, bounds=data.bounds)  # wrap a bare module once, not per metric
    return BackdoorEvaluation(
        clean_accuracy=clean_accuracy(clf, data.x, data.y, batch_size=batch_size),
        attack_success_rate=attack_success_rate(clf, data.x, data.y, trigger, target, batch_size=batch_size),
        n_clean=len(data),
        n_triggered=int((data.y != target).sum()),
        target=int(target),
    )
