"""The victim as an extraction attack sees it: released probabilities, every row counted.

The victim is seen only through ``torch.softmax(victim(x), 1)`` under ``no_grad`` (what an API — or an
output policy wrapping it — releases), and every row sent is counted against a hard budget.
"""

from __future__ import annotations

import torch

from bastion.errors import QueryBudgetError
from bastion.model import Classifier

__all__ = ["Oracle"]


class Oracle:
    """The victim as the attacker sees it: released probabilities (N, K) sent in batches through a
    :class:`bastion.blackbox.QueryCounter` with a hard ``budget`` (rows; a request that would pass it
    raises :class:`QueryBudgetError` before anything is sent)."""

    def __init__(self, victim: Classifier, budget: int, batch_size: int = 512) -> None:
        from bastion.blackbox import QueryCounter

        self.victim, self.budget, self.batch_size = victim, int(budget), int(batch_size)
        self.counter = QueryCounter(victim, budget=self.budget)

    @property
    def queries(self) -> int:
        return self.counter.queries

    @property
    def left(self) -> int:
        return self.budget - self.counter.queries

    def released(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        if self.queries + n > self.budget:  # refuse the whole request, not its last batches
            raise QueryBudgetError(
                f"{n} more queries would exceed the budget of {self.budget} ({self.queries} used)"
            )
        parts = [self.counter.released(x[lo : lo + self.batch_size]) for lo in range(0, n, self.batch_size)]
        return torch.cat(parts).float().to(x.device)
