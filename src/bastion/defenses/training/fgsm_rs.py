"""Fast adversarial training: FGSM from a random start.

Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020: one
signed-gradient step of size α = 1.25·ε from a uniform random point of the ball matches PGD training
at the cost of two forward-backward passes per batch. It can overfit catastrophically (robustness
to PGD collapses within an epoch); :func:`bastion.harden` guards it with held-out PGD accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.defenses.training.inner import perturb
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["FastFGSM"]


class FastFGSM(Objective):
    """Cross-entropy on one FGSM step of ``step_size`` (default ``1.25 * epsilon``).

    The random start is drawn from the linf box around x and *not* clipped to the bounds before the
    gradient is taken (the step's result is): on images with saturated pixels (MNIST's zeros) clipping
    puts half of the start exactly on the bound, which weakens the randomisation that prevents
    catastrophic overfitting (measured: at linf 0.3 on MNIST the clipped start overfits in the first
    epochs). For l2 the start is the usual uniform draw from the ball ∩ bounds.
    ``random_start=False`` gives plain FGSM training (Goodfellow et al. 2015), the set-up that
    overfits catastrophically at large steps.
    """

    name = "fgsm-rs"
    needs_threat = True
    gradient_inner_attack = True

    def __init__(self, step_size: float | None = None, random_start: bool = True) -> None:
        if step_size is not None:
            check_positive("step_size", step_size, error=DefenseError)
        self.step_size = step_size
        self.random_start = bool(random_start)

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        threat = batch.require_threat("fast FGSM training")
        step = self.step_size if self.step_size is not None else 1.25 * threat.epsilon
        x_adv = perturb(
            attack_forward,
            batch.x,
            batch.y,
            threat,
            steps=1,
            step_size=step,
            generator=batch.generator,
            start="uniform-unclipped" if self.random_start else "zero",
        )
        logits = forward(x_adv)
        return F.cross_entropy(logits, batch.y), logits
