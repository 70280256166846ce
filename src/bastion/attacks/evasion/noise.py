"""Random noise on the surface of the threat ball: the weakest possible attack, used as a sanity check.

Carlini et al., "On Evaluating Adversarial Robustness" (2019), §5: if random perturbations of the
allowed size fool a model where gradient attacks fail, the gradient attacks are broken (gradient
masking), not the model robust. Each draw is a uniformly random point on the sphere of radius epsilon
(linf: epsilon times random signs; l2: epsilon times a uniformly random direction), clipped to bounds.
"""

from __future__ import annotations

import torch

from bastion.attacks.base import Attack, check_positive, is_success
from bastion.errors import ThreatModelError
from bastion.model import Classifier
from bastion.rng import Randomness, integers, normal, rows
from bastion.threat import Norm, ThreatModel

__all__ = ["RandomNoise", "sphere_noise"]


def sphere_noise(threat: ThreatModel, x: torch.Tensor, generator: Randomness) -> torch.Tensor:
    """A perturbation of norm exactly ``threat.epsilon`` per sample, uniformly random in direction."""
    eps = threat.epsilon
    if threat.norm is Norm.LINF:
        bits = integers(generator, 0, 2, x.shape, device=x.device)
        return eps * (2 * bits.to(x.dtype) - 1)
    z = normal(generator, x.shape, like=x).flatten(1)
    z = z / z.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)
    return (eps * z).view_as(x)


class RandomNoise(Attack):
    """``draws`` random perturbations on the epsilon-sphere; keeps each sample's first that fools.

    Needs labels only (one query per draw and sample still unbroken). Refuses an unbounded threat:
    noise of unbounded size says nothing.
    """

    name = "noise"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "decisions"

    def __init__(self, draws: int = 100) -> None:
        check_positive("draws", draws, integer=True)
        self.draws = int(draws)

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
        if threat.unbounded:
            raise ThreatModelError("random noise needs a finite epsilon")
        x_adv = x.clone()
        idx = torch.arange(x.shape[0], device=x.device)
        with torch.no_grad():
            for _ in range(self.draws):
                x0 = x[idx]
                candidate = threat.project(x0, x0 + sphere_noise(threat, x0, rows(generator, idx)))
                fooled = is_success(model(candidate), y[idx], None if targets is None else targets[idx])
                x_adv[idx[fooled]] = candidate[fooled]
                idx = idx[~fooled]
                if idx.numel() == 0:
                    break
        return x_adv
