"""Held-out checks during training, and the guard that acts on them.

The guard keeps the checkpoint with the best held-out PGD accuracy and calls for a stop when that
accuracy falls more than ``guard_drop`` below its best: catastrophic overfitting (Wong et al. 2020),
and Rice et al.'s (2020) best-checkpoint remedy for robust overfitting.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bastion.defenses.training.config import TrainingConfig
from bastion.defenses.training.inner import perturb
from bastion.defenses.training.objective import Forward
from bastion.threat import ThreatModel

__all__ = ["Guard", "accuracy", "pgd_accuracy"]


@torch.no_grad()
def accuracy(forward: Forward, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    hits = sum(
        int((forward(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(y), batch_size)
    )
    return hits / max(len(y), 1)


def pgd_accuracy(
    forward: Forward, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, cfg: TrainingConfig, seed: int
) -> float:
    """Held-out accuracy under PGD-``guard_steps`` (uniform start, step 2.5·ε/steps)."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    hits = 0
    for i in range(0, len(y), cfg.batch_size):
        xb, yb = x[i : i + cfg.batch_size], y[i : i + cfg.batch_size]
        x_adv = perturb(forward, xb, yb, threat, steps=cfg.guard_steps, step_size=None, generator=generator)
        with torch.no_grad():
            hits += int((forward(x_adv).argmax(1) == yb).sum())
    return hits / max(len(y), 1)


class Guard:
    """The best checkpoint so far by held-out PGD accuracy, and the collapse test."""

    def __init__(self, drop: float) -> None:
        self.drop = drop
        self.best_accuracy: float | None = None
        self.best_epoch: float | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def update(self, module: nn.Module, epoch: float, robust_accuracy: float) -> str | None:
        """Record a check; returns why training must stop (a collapse), or None to go on."""
        if self.best_accuracy is None or robust_accuracy >= self.best_accuracy:
            self.best_accuracy, self.best_epoch = robust_accuracy, epoch
            self._state = copy.deepcopy(module.state_dict())
            return None
        if robust_accuracy < self.best_accuracy - self.drop:
            return (
                f"catastrophic overfitting at epoch {epoch}: held-out PGD accuracy fell from "
                f"{self.best_accuracy:.1%} (epoch {self.best_epoch}) to {robust_accuracy:.1%}; "
                f"stopped and restored epoch {self.best_epoch}"
            )
        return None

    def restore(self, module: nn.Module) -> None:
        """Load the best checkpoint into ``module`` (nothing when no check has run)."""
        if self._state is not None:
            module.load_state_dict(self._state)
