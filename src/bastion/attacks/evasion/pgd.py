"""Projected Gradient Descent with random start.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018. Steps along the sign of the gradient (linf) or the L2-normalised gradient (l2)
and projects back onto the threat ball intersected with the bounds after every step.
"""

from __future__ import annotations

import math

import torch

from bastion.attacks.base import Attack, check_positive, is_success
from bastion.attacks.gradients import loss_and_grad
from bastion.attacks.losses import get_loss
from bastion.model import Classifier
from bastion.rng import Randomness, normal, rows, uniform
from bastion.threat import Norm, ThreatModel

__all__ = ["PGD", "ascent_direction", "effective_epsilon", "random_start"]


def effective_epsilon(threat: ThreatModel, x: torch.Tensor) -> float:
    """``threat.epsilon``, or for an unbounded threat the diameter of the bounds box in its norm.

    Every perturbation that stays inside the bounds has at most that norm, so step sizes scaled by it
    cover the whole feasible set.
    """
    if not threat.unbounded:
        return threat.epsilon
    width = threat.bounds[1] - threat.bounds[0]
    return width if threat.norm is Norm.LINF else width * math.sqrt(x[0].numel())


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Steepest ascent of unit ``norm``: sign (linf) or grad / ||grad||_2 (l2); same shape as ``grad``."""
    if norm is Norm.LINF:
        return grad.sign()
    norms = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
    return grad / norms.view(-1, *([1] * (grad.dim() - 1)))


def random_start(threat: ThreatModel, x: torch.Tensor, epsilon: float, generator: Randomness) -> torch.Tensor:
    """A point drawn uniformly from the ``epsilon`` ball around ``x`` (N, ...), clipped to the bounds."""
    if threat.norm is Norm.LINF:
        delta = epsilon * (2 * uniform(generator, x.shape, like=x) - 1)
    else:
        n, d = x.shape[0], x[0].numel()
        direction = normal(generator, (n, d), like=x)
        direction = direction / direction.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)
        # Radius ~ eps * U^(1/d) makes the draw uniform in volume, not concentrated at the centre.
        radius = epsilon * uniform(generator, (n, 1), like=x) ** (1.0 / d)
        delta = (direction * radius).view_as(x)
    return (x + delta).clamp(*threat.bounds)


def _box(threat: ThreatModel, x: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate (low, high) of the linf ball of radius ``epsilon`` around ``x`` ∩ the bounds."""
    low, high = threat.bounds
    return (x - epsilon).clamp_(low, high), (x + epsilon).clamp_(low, high)


class PGD(Attack):
    """PGD-``steps`` with ``restarts`` random restarts; keeps each sample's first successful iterate.

    ``step_size`` defaults to ``2.5 * epsilon / steps`` (Madry et al.). ``loss`` is "ce", "margin" or "dlr".
    Samples leave the working batch as soon as they are fooled, and restarts re-run only the rest, so
    an attack costs at most ``steps * restarts * eot_samples`` gradient evaluations per sample.
    """

    name = "pgd"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "gradient"

    def __init__(
        self,
        steps: int = 40,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        eot_samples: int = 1,
    ) -> None:
        check_positive("steps", steps, integer=True)
        if step_size is not None:
            check_positive("step_size", step_size)
        check_positive("restarts", restarts, integer=True)
        check_positive("eot_samples", eot_samples, integer=True)
        self._loss_fn = get_loss(loss)
        self.steps = int(steps)
        self.step_size = step_size
        self.random_start = bool(random_start)
        self.restarts = int(restarts)
        self.loss = loss
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
        eps = effective_epsilon(threat, x)
        step = self.step_size if self.step_size is not None else 2.5 * eps / self.steps
        x_adv = x.clone()
        todo = torch.arange(x.shape[0], device=x.device)
        for restart in range(self.restarts):
            idx, x0, y0 = todo, x[todo], y[todo]
            t0 = None if targets is None else targets[todo]
            # linf: the ball ∩ bounds is a box, and one clamp to it is threat.project, at a third of the cost.
            box = _box(threat, x0, eps) if threat.norm is Norm.LINF else None
            xk = random_start(threat, x0, eps, rows(generator, todo)) if self.random_start else x0.clone()
            for _ in range(self.steps):
                _, grad, logits = loss_and_grad(
                    model, xk, y0, self._loss_fn, targets=t0, eot_samples=self.eot_samples
                )
                # The gradient pass's logits tell which iterates already fool the model: no extra forward.
                fooled = is_success(logits, y0, t0)
                if bool(fooled.any()):
                    x_adv[idx[fooled]] = xk[fooled]
                    keep = ~fooled
                    idx, x0, y0, xk, grad = idx[keep], x0[keep], y0[keep], xk[keep], grad[keep]
                    t0 = None if t0 is None else t0[keep]
                    box = None if box is None else (box[0][keep], box[1][keep])
                    if idx.numel() == 0:
                        return x_adv
                xk = torch.add(xk, ascent_direction(grad, threat.norm), alpha=step)
                xk = xk.clamp_(*box) if box is not None else threat.project(x0, xk)
            x_adv[idx] = xk
            if restart == self.restarts - 1:
                break  # the base class verifies the final iterates; no need to check them here
            with torch.no_grad():
                todo = idx[~is_success(model(xk), y0, t0)]
            if todo.numel() == 0:
                break
        return x_adv
