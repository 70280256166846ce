"""First-order spatial attack (Engstrom et al., ICML 2019): projected signed-gradient ascent on the
transform's parameters through the differentiable rotate-then-translate transform. The paper finds it
weaker than the grid: the loss is non-concave in (angle, tx, ty), so gradient steps stall in local maxima.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.attacks.physical.spatial import SpatialAttack, pick
from bastion.attacks.physical.spatial_threat import SpatialThreat, spatial_transform
from bastion.model import Classifier

__all__ = ["SpatialFirstOrder"]


class SpatialFirstOrder(SpatialAttack):
    """Projected gradient ascent on (angle, tx, ty) through the differentiable transform, from a uniform
    random start, ``restarts`` times; steps follow the gradient's sign (``rotation_step_size`` degrees,
    ``translation_step_size`` of the side). Keeps the worst iterate seen. Costs
    ``restarts * (steps + 1)`` queries and ``restarts * steps`` gradient evaluations per input."""

    name = "spatial_first_order"

    def __init__(
        self,
        steps: int = 40,
        *,
        rotation_step_size: float = 2.0,
        translation_step_size: float = 0.01,
        restarts: int = 1,
        batch_size: int = 2048,
    ) -> None:
        super().__init__(batch_size=batch_size)
        check_positive("steps", steps, integer=True)
        check_positive("restarts", restarts, integer=True)
        check_positive("rotation_step_size", rotation_step_size)
        check_positive("translation_step_size", translation_step_size)
        self.steps = int(steps)
        self.rotation_step_size = float(rotation_step_size)
        self.translation_step_size = float(translation_step_size)
        self.restarts = int(restarts)

    def _search(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: SpatialThreat,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        n = x.shape[0]
        step = torch.tensor(
            [self.rotation_step_size, self.translation_step_size, self.translation_step_size],
            dtype=x.dtype,
            device=x.device,
        )
        seen_p, seen_loss, seen_fooled = [], [], []
        for _ in range(self.restarts):
            p = threat.sample(n, generator, device=x.device).to(x.dtype)
            for t in range(self.steps + 1):
                p = p.detach().requires_grad_(t < self.steps)
                loss, fooled = self._forward(model, x, y, p, threat)
                seen_p.append(p.detach())
                seen_loss.append(loss.detach())
                seen_fooled.append(fooled)
                if t < self.steps:
                    (grad,) = torch.autograd.grad(loss.sum(), p)
                    p = threat.clamp(p.detach() + step * grad.sign())
        candidates = torch.stack(seen_p, dim=1)
        return pick(candidates, torch.stack(seen_loss, dim=1), torch.stack(seen_fooled, dim=1))

    def _forward(
        self, model: Classifier, x: torch.Tensor, y: torch.Tensor, p: torch.Tensor, threat: SpatialThreat
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, fooled = [], []
        with torch.set_grad_enabled(p.requires_grad):
            for i in range(0, x.shape[0], self.batch_size):
                sl = slice(i, i + self.batch_size)
                logits = model(spatial_transform(x[sl], p[sl], threat.bounds))
                loss.append(F.cross_entropy(logits, y[sl], reduction="none"))
                fooled.append(logits.argmax(dim=1) != y[sl])
        return torch.cat(loss), torch.cat(fooled)
