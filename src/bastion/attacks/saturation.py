"""Does the cross-entropy loss still have a gradient? A saturated softmax says no.

With very large logits (a temperature folded into the last layer, a model trained to extreme
confidence) ``softmax`` rounds to exactly one-hot in float32 at confidently classified inputs, and the
cross-entropy's input gradient is exactly zero there, while the margin (best other logit minus the true
one) keeps its gradient: it does not depend on the logits' scale. A cross-entropy attack, or adversarial
training whose inner attack maximises cross-entropy, then does nothing on those inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bastion.attacks.gradients import loss_and_grad
from bastion.attacks.losses import ce_loss, margin_loss

__all__ = ["vanishing_cross_entropy"]


def vanishing_cross_entropy(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> float:
    """The share of the correctly classified inputs of ``x`` (N, ...) whose cross-entropy input gradient
    is exactly zero while their margin gradient is not (0.0 when none is correctly classified)."""
    _, ce_grad, logits = loss_and_grad(model, x, y, ce_loss)
    _, margin_grad, _ = loss_and_grad(model, x, y, margin_loss)
    correct = logits.argmax(dim=1) == y
    if not bool(correct.any()):
        return 0.0
    dead = (ce_grad.flatten(1) == 0).all(dim=1) & (margin_grad.flatten(1) != 0).any(dim=1)
    return float((dead & correct).sum()) / float(correct.sum())
