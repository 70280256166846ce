"""Fast Gradient (Sign) Method: one gradient step of the full budget.

Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015. Under linf
the step is ``epsilon * sign(grad)``; under l2 it is the gradient rescaled to L2 norm ``epsilon``
(the "fast gradient method"). On a linear model the gradient is constant, so one step is optimal:
FGSM finds an adversarial exactly when one exists inside the ball (bounds permitting).
"""

from __future__ import annotations

import torch

from bastion.attacks.base import Attack, check_positive
from bastion.attacks.evasion.pgd import ascent_direction, effective_epsilon
from bastion.attacks.gradients import loss_and_grad
from bastion.attacks.losses import ce_loss
from bastion.model import Classifier
from bastion.rng import Randomness
from bastion.threat import Norm, ThreatModel

__all__ = ["FGSM"]


class FGSM(Attack):
    """One step of size ``epsilon`` along the cross-entropy gradient; ``eot_samples`` averages it (EOT)."""

    name = "fgsm"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "gradient"

    def __init__(self, eot_samples: int = 1) -> None:
        check_positive("eot_samples", eot_samples, integer=True)
        self.eot_samples = int(eot_samples)

    def _run(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        targets: torch.Tensor | None,
        generator: Randomness,
    ) -> torch.Tensor:
        # ce_loss with targets is minus the target's cross-entropy, so ascent moves towards the target.
        _, grad, _ = loss_and_grad(model, x, y, ce_loss, targets=targets, eot_samples=self.eot_samples)
        step = effective_epsilon(threat, x) * ascent_direction(grad, threat.norm)
        return threat.project(x, x + step)
