"""PGD adversarial training.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018: minimise the cross-entropy on the worst case PGD finds inside the threat ball.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.defenses.training.inner import perturb
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["PGDTraining"]


class PGDTraining(Objective):
    """Cross-entropy on PGD-``steps`` adversarials (uniform random start).

    ``step_size`` defaults to ``2.5 * epsilon / steps``, which lets the iterate cross the ball. Each
    step costs ``steps + 1`` forward-backward passes.
    """

    name = "pgd"
    needs_threat = True
    gradient_inner_attack = True

    def __init__(self, steps: int = 10, step_size: float | None = None) -> None:
        check_positive("steps", steps, integer=True, error=DefenseError)
        if step_size is not None:
            check_positive("step_size", step_size, error=DefenseError)
        self.steps = int(steps)
        self.step_size = step_size

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = perturb(
            attack_forward,
            batch.x,
            batch.y,
            batch.require_threat("PGD training"),
            steps=self.steps,
            step_size=self.step_size,
            generator=batch.generator,
        )
        logits = forward(x_adv)
        return F.cross_entropy(logits, batch.y), logits
