"""TRADES: trade clean accuracy against robustness with a KL term.

Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off between Robustness and
Accuracy", ICML 2019: loss = CE(f(x), y) + β · KL(f(x) ‖ f(x')), where x' maximises the KL inside the
ball (PGD from x + 0.001·N(0, 1)). Larger β buys robustness with clean accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.defenses.training.inner import perturb
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["TRADES"]


def _kl(adv_logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(clean) ‖ softmax(adv)), (N,)."""
    return F.kl_div(
        F.log_softmax(adv_logits, dim=1),
        F.log_softmax(clean_logits, dim=1),
        reduction="none",
        log_target=True,
    ).sum(dim=1)


class TRADES(Objective):
    """TRADES with ``beta`` (6.0 in the paper for MNIST and CIFAR-10) and a ``steps``-step inner PGD."""

    name = "trades"
    needs_threat = True
    gradient_inner_attack = True

    def __init__(self, beta: float = 6.0, steps: int = 10, step_size: float | None = None) -> None:
        check_positive("beta", beta, allow_zero=True, error=DefenseError)
        check_positive("steps", steps, integer=True, error=DefenseError)
        if step_size is not None:
            check_positive("step_size", step_size, error=DefenseError)
        self.beta = float(beta)
        self.steps = int(steps)
        self.step_size = step_size

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        threat = batch.require_threat("TRADES")
        with torch.no_grad():
            target = attack_forward(batch.x)

        def kl_to_clean(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
            return _kl(logits, target)

        x_adv = perturb(
            attack_forward,
            batch.x,
            batch.y,
            threat,
            steps=self.steps,
            step_size=self.step_size,
            generator=batch.generator,
            start="normal",
            loss_fn=kl_to_clean,
        )
        clean = forward(batch.x)
        robust = _kl(forward(x_adv), clean).mean()
        return F.cross_entropy(clean, batch.y) + self.beta * robust, clean
