"""Result types shared by attacks and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["AttackResult"]


@dataclass(frozen=True)
class AttackResult:
    """What an attack returns; produced by :class:`bastion.attacks.Attack` only.

    - ``x_adv`` (N, ...): inside the threat ball and the bounds, always.
    - ``success`` (N,) bool: recomputed on the model after projection (misclassified, or classified as
      the target for targeted attacks). Inputs the model already gets wrong count as successes.
    - ``distance`` (N,): norm of ``x_adv - x`` in the threat model's norm.
    - ``predictions`` (N,): the model's labels on ``x_adv``.
    - ``queries``: inputs forwarded through the model by the attack; ``gradient_evals``: inputs
      back-propagated through the model (once per backward pass). The base class's final verification
      is not counted.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    predictions: torch.Tensor
    queries: int
    gradient_evals: int
    seconds: float
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if self.success.numel() else 0.0

    def __len__(self) -> int:
        return int(self.success.shape[0])
