"""Transfer attack with query feedback: PGD on a differentiable surrogate, success checked on the target.

Papernot et al., "Practical Black-Box Attacks against Machine Learning", AsiaCCS 2017 (surrogate trained
on the target's labels); Athalye, Carlini, Wagner, "Obfuscated Gradients Give a False Sense of
Security", ICML 2018 (a gradient-masked model is attacked through a model whose gradients are sound).
Every surrogate step is checked on the target (one label query per sample and step) and the first
iterate that fools the target is kept, so the attack needs labels only.
"""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks.base import Attack, check_positive, is_success
from bastion.attacks.evasion._surrogate import distil_surrogate
from bastion.attacks.evasion.pgd import ascent_direction, effective_epsilon, random_start
from bastion.attacks.gradients import loss_and_grad
from bastion.attacks.losses import margin_loss
from bastion.model import Classifier
from bastion.rng import Randomness
from bastion.threat import Norm, ThreatModel

__all__ = ["Transfer"]


class Transfer(Attack):
    """PGD-``steps`` on ``surrogate`` (a module taking inputs in input space and returning logits).

    Without a surrogate, one is distilled from the target's labels on the attacked inputs
    (``distil_steps`` optimiser steps; its label queries count). The margin loss is used on the
    surrogate because its logits are uncalibrated.
    """

    name = "transfer"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "decisions"

    def __init__(
        self,
        surrogate: nn.Module | Classifier | None = None,
        steps: int = 50,
        distil_steps: int = 300,
        copies: int = 9,
    ) -> None:
        check_positive("steps", steps, integer=True)
        check_positive("distil_steps", distil_steps, integer=True)
        check_positive("copies", copies, integer=True, allow_zero=True)
        self._surrogate = surrogate
        self.steps, self.distil_steps, self.copies = int(steps), int(distil_steps), int(copies)
        self.surrogate = "given" if surrogate is not None else "distilled"

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
        surrogate = self._surrogate
        if surrogate is None:
            surrogate = distil_surrogate(
                model, x, threat, generator, copies=self.copies, steps=self.distil_steps
            )
        eps = effective_epsilon(threat, x)
        step = 2.5 * eps / self.steps
        x_adv = x.clone()
        idx = torch.arange(x.shape[0], device=x.device)
        xk = random_start(threat, x, eps / 2, generator)
        t = targets
        for _ in range(self.steps):
            _, grad, _ = loss_and_grad(surrogate, xk, y[idx], margin_loss, targets=t)
            xk = threat.project(x[idx], xk + step * ascent_direction(grad, threat.norm))
            with torch.no_grad():
                fooled = is_success(model(xk), y[idx], t)
            x_adv[idx[fooled]] = xk[fooled]
            keep = ~fooled
            idx, xk = idx[keep], xk[keep]
            t = None if t is None else t[keep]
            if idx.numel() == 0:
                break
        return x_adv
