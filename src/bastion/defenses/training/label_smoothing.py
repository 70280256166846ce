"""Label smoothing as a defense, with positive and negative factors.

Szegedy et al. 2016 introduced it as a regulariser; as an evasion defense it mostly flattens the
logits, which weakens cross-entropy attacks without adding robustness (Carlini et al. 2019 list it
among defenses to evaluate adaptively). Struppek et al. 2024 ("Be Careful What You Smooth For")
found that positive smoothing helps model-inversion attacks while a *negative* factor hinders them,
a privacy defense. It is here to be measured, and the audit says how much it really holds.
"""

from __future__ import annotations

import torch

from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["LabelSmoothing"]


class LabelSmoothing(Objective):
    """Cross-entropy against (1 − α)·one-hot + α/K, α = ``smoothing`` in (−1, 1), α ≠ 0.

    Negative α puts more than 1 on the true class and negative mass on the others (computed here:
    ``torch``'s ``label_smoothing`` silently treats a negative factor as 0). Logits (N, K).
    """

    name = "label-smoothing"

    def __init__(self, smoothing: float = 0.1) -> None:
        if not (-1.0 < smoothing < 1.0) or smoothing == 0:
            raise DefenseError(
                f"smoothing must lie in (-1, 1) and not be 0, got {smoothing} "
                "(e.g. 0.1; negative, e.g. -0.05, for Struppek et al.'s privacy defense)"
            )
        self.smoothing = float(smoothing)

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(batch.x)
        log_p = logits.log_softmax(1)
        true = log_p.gather(1, batch.y[:, None]).squeeze(1)
        per_sample = -(1.0 - self.smoothing) * true - self.smoothing * log_p.mean(1)
        return per_sample.mean(), logits
