"""Defensive distillation.

Papernot, McDaniel, Wu, Jha, Swami, "Distillation as a Defense to Adversarial Perturbations against
Deep Neural Networks", IEEE S&P 2016: a student learns the teacher's softmax at temperature T and is
deployed at T = 1. Its logits grow by about T, the softmax saturates, and cross-entropy gradients
vanish: the defense masks gradients rather than adding robustness (Carlini & Wagner 2016). Bastion
ships it so that users can see the audit catch exactly that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["Distillation"]


class Distillation(Objective):
    """Cross-entropy of softmax(z/T) against the teacher's softmax(z_teacher/T), or against the hard
    labels when ``teacher`` is None (how the teacher itself is trained).

    :func:`bastion.harden` runs both stages, as Papernot et al. do: a teacher trained at temperature T
    (its logits grow by about T), then a fresh student trained on the teacher's soft labels at T.
    """

    name = "distillation"

    def __init__(self, teacher: Forward | None = None, temperature: float = 20.0) -> None:
        check_positive("temperature", temperature, error=DefenseError)
        self._teacher = teacher
        self.temperature = float(temperature)

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(batch.x)
        if self._teacher is None:
            return F.cross_entropy(logits / self.temperature, batch.y), logits
        with torch.no_grad():
            soft = F.softmax(self._teacher(batch.x) / self.temperature, dim=1)
        loss = -(soft * F.log_softmax(logits / self.temperature, dim=1)).sum(dim=1).mean()
        return loss, logits
