"""Label smoothing as a defense.

Szegedy et al. 2016 introduced it as a regulariser; as a defense it mostly flattens the logits, which
weakens cross-entropy attacks without adding robustness (Carlini et al. 2019 list it among defenses
to evaluate adaptively). It is here to be measured, and the audit says how much it really holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["LabelSmoothing"]


class LabelSmoothing(Objective):
    """Cross-entropy against (1 − ``smoothing``)·one-hot + ``smoothing``/K."""

    name = "label-smoothing"

    def __init__(self, smoothing: float = 0.1) -> None:
        if not 0.0 < smoothing < 1.0:
            raise DefenseError(f"smoothing must lie in (0, 1), got {smoothing}")
        self.smoothing = float(smoothing)

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(batch.x)
        return F.cross_entropy(logits, batch.y, label_smoothing=self.smoothing), logits
