"""The target-class rounds of a targeted attack over the model's top classes (APGD-T, FAB-T)."""

from __future__ import annotations

import torch

from bastion.model import Classifier

__all__ = ["Round", "target_rounds"]

Round = tuple[torch.Tensor | None, torch.Tensor | None]
"""(the class the round's loss aims at, or None; the class that counts as success, or None: any other)."""


def target_rounds(
    model: Classifier, x: torch.Tensor, targets: torch.Tensor | None, targeted: bool, n_target_classes: int
) -> list[Round]:
    """One round ``(targets, targets)`` when the caller gave targets or the attack is untargeted; else
    one round per class ranked 2nd .. ``n_target_classes + 1``-th at ``x`` (N, ...), each aimed at that
    class and succeeding on any misclassification."""
    if not targeted or targets is not None:
        return [(targets, targets)]
    with torch.no_grad():
        order = model(x).argsort(dim=1, descending=True)
    return [(order[:, i], None) for i in range(1, min(n_target_classes, order.shape[1] - 1) + 1)]
