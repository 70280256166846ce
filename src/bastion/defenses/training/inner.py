"""The inner maximisation of adversarial training: a lean PGD on a live, training network.

The evasion attacks wrap a frozen copy of a model and verify every result; inside a training step
the network changes after every batch and only the perturbed batch matters, so this loop skips the
wrapper, the verification and early stopping, and runs exactly ``steps`` gradient evaluations.
It reuses the attacks' random start, ascent direction and projection.
"""

from __future__ import annotations

import torch

from bastion.attacks.evasion.pgd import ascent_direction, random_start
from bastion.attacks.gradients import loss_and_grad
from bastion.attacks.losses import LossFn, ce_loss
from bastion.defenses.training.objective import Forward
from bastion.threat import Norm, ThreatModel

__all__ = ["perturb"]


def perturb(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float | None,
    generator: torch.Generator,
    start: str = "uniform",
    loss_fn: LossFn = ce_loss,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """``steps`` ascent steps of ``loss_fn`` from a start inside the threat ball; returns x_adv (N, ...).

    ``step_size`` None means ``2.5 * epsilon / steps`` (Madry et al.: enough to cross the ball).

    ``start``: "uniform" (a uniform draw from the ball ∩ bounds, Madry et al.), "uniform-unclipped"
    (x + U(-ε, ε) per coordinate, not clipped to the bounds: the first gradient is taken there, as in
    Wong et al.'s fast training), "zero" (x itself), or "normal" (x + 0.001·N(0, 1), TRADES).
    ``init`` (N, ...), when given, is the start instead (projected onto the ball ∩ bounds first): a
    perturbation carried over from an earlier epoch, as in ATTA. Every step's iterate lies inside the
    ball ∩ bounds. The result is detached: gradients of the
    training loss never flow into the perturbation.
    """
    eps = threat.epsilon
    if eps == 0:
        return x.detach()
    if step_size is None:
        step_size = 2.5 * eps / steps
    if init is not None:
        xk = threat.project(x, init.to(dtype=x.dtype))
    elif start == "uniform-unclipped" and threat.norm is Norm.LINF:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        xk = x + eps * (2 * noise - 1)
    elif start in ("uniform", "uniform-unclipped"):
        xk = random_start(threat, x, eps, generator)
    elif start == "normal":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        xk = threat.project(x, x + 0.001 * noise)
    else:
        xk = x.detach().clone()
    low, high = threat.bounds
    if threat.norm is Norm.LINF:  # the ball ∩ bounds is a box: one clamp is the projection
        box_low, box_high = (x - eps).clamp(low, high), (x + eps).clamp(low, high)
    for _ in range(steps):
        _, grad, _ = loss_and_grad(forward, xk, y, loss_fn)
        xk = xk + step_size * ascent_direction(grad, threat.norm)  # every iterate ends inside the box
        xk = (
            torch.max(torch.min(xk, box_high), box_low) if threat.norm is Norm.LINF else threat.project(x, xk)
        )
    return xk.detach()
