"""Input gradients of per-sample losses, with Expectation over Transformation (EOT).

EOT (Athalye et al. 2018) averages the gradient over ``eot_samples`` forward passes, so that
attacks see through a model's randomness instead of chasing one noise draw.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bastion.attacks.base import differentiable
from bastion.attacks.losses import LossFn

__all__ = ["loss_and_grad"]


def loss_and_grad(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    *,
    targets: torch.Tensor | None = None,
    eot_samples: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(loss (N,), grad (N, ...), logits (N, K))`` at ``x``, averaged over EOT samples.

    Losses of different samples are independent, so the sum's gradient is each sample's gradient.
    """
    x = x.detach().requires_grad_(True)
    if eot_samples == 1:  # the hot path of every gradient attack: no accumulators
        logits = differentiable(model(x))
        loss = loss_fn(logits, y, targets)
        (g,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), g, logits.detach()
    grad = torch.zeros_like(x)
    loss_total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    logits_total: torch.Tensor | None = None
    for _ in range(eot_samples):
        logits = differentiable(model(x))
        loss = loss_fn(logits, y, targets)
        (g,) = torch.autograd.grad(loss.sum(), x)
        grad += g
        loss_total += loss.detach()
        logits_total = logits.detach() if logits_total is None else logits_total + logits.detach()
    assert logits_total is not None  # eot_samples >= 1 is validated by the attacks
    return loss_total / eot_samples, grad / eot_samples, logits_total / eot_samples
