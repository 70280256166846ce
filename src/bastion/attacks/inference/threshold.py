"""Loss-threshold membership inference (Yeom, Giacomelli, Fredrikson & Jha, "Privacy risk in machine
learning: analyzing the connection to overfitting", CSF 2018).

Members were trained on, so their loss tends to be lower: the score is minus the cross-entropy of the
true label under the released probabilities, ``log p_y``. One query per example, no reference models;
the threshold is not fitted (the metrics sweep all thresholds). Its weakness, which LiRA and RMIA fix:
one global threshold ignores that some examples are easy (low loss whether trained on or not) and others
hard, so it finds "easy" non-members and rarely identifies a member with confidence (low TPR at low FPR).
"""

from __future__ import annotations

import torch

from bastion.attacks.inference._query import Victim, true_log_prob
from bastion.attacks.inference.base import MembershipAttack, Scored
from bastion.model import Classifier

__all__ = ["LossThreshold"]


class LossThreshold(MembershipAttack):
    """Score = log p_y(x) = -cross-entropy (N,); higher = member."""

    name = "threshold"

    def __init__(self, batch_size: int = 512) -> None:
        self.batch_size = int(batch_size)

    def params(self) -> dict[str, int]:
        return {"batch_size": self.batch_size}

    def scores(self, model: Classifier, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(scores (N,) float64, queries) for inputs x (N, ...) with labels y (N,)."""
        victim = Victim(model, self.batch_size)
        return true_log_prob(victim.log_probs(x), y), victim.queries

    def _score(
        self, model: Classifier, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator
    ) -> Scored:
        """Deterministic: ``generator`` is unused."""
        return Scored(*self.scores(model, x, y))
