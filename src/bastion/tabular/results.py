"""What a tabular attack returns; produced by :class:`bastion.tabular.attacks.TabularAttack` only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.tabular.data import records
from bastion.tabular.schema import TabularSchema

__all__ = ["TabularAttackResult"]


@dataclass(frozen=True)
class TabularAttackResult:
    """Adversarial records and their verification.

    - ``x`` / ``x_adv`` (N, D) float64, user space: originals and the repaired adversarial records
      (``x_adv == x`` where nothing valid was found).
    - ``valid`` (N,) bool: ``x_adv`` meets every constraint of the threat model, checked by
      :func:`bastion.tabular.satisfied` after the repair, independently of it.
    - ``success`` (N,) bool: the model misclassifies ``x_adv`` **and** it is valid (records the model
      already got wrong count as successes, as in the image attacks).
    - ``predictions`` (N,): the model's labels on ``x_adv``; ``changed`` (N, D) bool: features that moved.
    - ``cost`` (N,): total change in the threat's budget units; ``queries``: records forwarded through
      the model by the attack (the base class's own checks are not counted); ``gradient_evals``:
      records back-propagated.
    """

    x: torch.Tensor
    x_adv: torch.Tensor
    y: torch.Tensor
    success: torch.Tensor
    valid: torch.Tensor
    predictions: torch.Tensor
    changed: torch.Tensor
    cost: torch.Tensor
    queries: int
    gradient_evals: int
    seconds: float
    attack: str
    schema: TabularSchema
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self) else 0.0

    @property
    def robust_accuracy(self) -> float:
        """Share of records still classified correctly after the attack (only valid adversarials count)."""
        return 1.0 - self.success_rate if len(self) else 0.0

    @property
    def constraint_satisfaction(self) -> float:
        """Share of returned records that meet every constraint (1.0 unless an original itself breaks one)."""
        return float(self.valid.float().mean()) if len(self) else 0.0

    @property
    def mean_queries(self) -> float:
        return self.queries / len(self) if len(self) else 0.0

    def summary(self) -> dict[str, Any]:
        """The headline numbers, JSON-ready."""
        return {
            "attack": self.attack,
            "records": len(self),
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "constraint_satisfaction": self.constraint_satisfaction,
            "mean_queries": self.mean_queries,
            "gradient_evals": self.gradient_evals,
            "seconds": self.seconds,
            "params": dict(self.params),
            "seed": self.seed,
        }

    def changes(self, i: int) -> list[tuple[str, Any, Any]]:
        """(feature, original value, adversarial value) for each feature record ``i`` changed."""
        before = records(self.x[i : i + 1], self.schema)[0]
        after = records(self.x_adv[i : i + 1], self.schema)[0]
        return [
            (n, before[n], after[n])
            for n, c in zip(self.schema.names, self.changed[i].tolist(), strict=True)
            if c
        ]

    def show(self, i: int) -> str:
        """One line: record ``i``'s verdict and changed features, e.g. ``#3 success: amount 1200 -> 900``."""
        verdict = "success" if bool(self.success[i]) else ("invalid" if not bool(self.valid[i]) else "robust")
        edits = ", ".join(f"{n} {a} -> {b}" for n, a, b in self.changes(i)) or "no change"
        return f"#{i} {verdict} (label {int(self.y[i])} -> {int(self.predictions[i])}): {edits}"
