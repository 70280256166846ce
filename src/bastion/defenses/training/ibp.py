"""IBP training: minimise a sound upper bound on the worst-case loss, so the model becomes certifiable.

Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably Robust
Models", 2018: loss = κ·CE(z(x), y) + (1 - κ)·CE(ẑ(x, ε), y), where ẑ_j is minus the lower bound of
the margin z_y - z_j over the epsilon box (:func:`bastion.certify.margin_lower_bounds`). Epsilon
grows from 0 over the config's ``epsilon_ramp`` and κ falls from 1 to ``kappa`` along with it; training
at an epsilon above the one to certify (e.g. 0.2 for 0.1 on MNIST) helps, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bastion.certify.ibp import check_network, margin_lower_bounds
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["IBPTraining"]


class IBPTraining(Objective):
    """κ·clean cross-entropy + (1 - κ)·cross-entropy of the interval-bound worst case (linf)."""

    name = "ibp"
    needs_threat = True

    def __init__(self, kappa: float = 0.5) -> None:
        if not 0.0 <= kappa <= 1.0:
            raise DefenseError(f"kappa must lie in [0, 1], got {kappa} (0.5 as in Gowal et al.)")
        self.kappa = float(kappa)
        self._network: tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None = None

    def bind(self, module: nn.Module, normalise: Callable[[torch.Tensor], torch.Tensor]) -> None:
        # Refuse a network IBP cannot follow (CertificationError, naming the layer) before any step.
        check_network(module, normalise, training=True)
        self._network = (module, normalise)

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        threat = batch.require_threat(self.name)
        if threat.norm.value != "linf":
            raise DefenseError(f"IBP training bounds linf boxes; got norm {threat.norm.value}")
        if self._network is None:
            raise DefenseError("IBPTraining needs the network: train() binds it before the first step")
        logits = forward(batch.x)
        kappa = 1.0 - (1.0 - self.kappa) * batch.ramp
        lo, hi = threat.bounds
        lower = (batch.x - threat.epsilon).clamp(min=lo)
        upper = (batch.x + threat.epsilon).clamp(max=hi)
        module, normalise = self._network
        worst = -margin_lower_bounds(module, lower, upper, batch.y, normalise=normalise)
        loss = kappa * F.cross_entropy(logits, batch.y) + (1.0 - kappa) * F.cross_entropy(worst, batch.y)
        return loss, logits
