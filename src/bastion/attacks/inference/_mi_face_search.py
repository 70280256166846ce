"""MI-Face's stopping rules and best-iterate bookkeeping, for K classes inverted side by side.

Fredrikson, Jha & Ristenpart, CCS 2015, Algorithm 1: keep the best iterate; stop a class after ``steps``
(alpha) updates, when its cost reaches ``threshold`` (gamma), or when ``patience`` (beta) evaluations
bring no new best (the paper's "cost above the last beta costs", made robust to noisy estimates); and,
with a query cap, before an evaluation it cannot afford. All state lives on the CPU, shape (K,).
"""

from __future__ import annotations

import torch

__all__ = ["Search"]


class Search:
    """The per-class state of an MI-Face run started from ``x`` (K, ...): best iterate ``best_x`` (on
    x's device), its ``best_cost`` and released confidence ``best_p``, evaluations ``since`` the last
    improvement, rows ``used``, updates ``done``, the ``reason`` each class stopped, and the ``active``
    class indices still searching."""

    def __init__(
        self,
        x: torch.Tensor,
        *,
        steps: int,
        patience: int,
        threshold: float,
        max_queries: int | None,
        per_eval: int,
    ) -> None:
        n = x.shape[0]
        self.steps, self.patience, self.threshold = steps, patience, threshold
        self.max_queries, self.per_eval = max_queries, per_eval
        self.best_x, self.best_cost = x.clone(), torch.full((n,), float("inf"))
        self.best_p, self.since = torch.zeros(n), torch.zeros(n, dtype=torch.long)
        self.used, self.done = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        self.reason = ["steps"] * n
        self.active = torch.arange(n)

    def affordable(self) -> torch.Tensor:
        """Stop (reason ``budget``) the active classes whose next evaluation would pass ``max_queries``;
        return the classes left active (K',)."""
        if self.max_queries is not None:
            over = self.used[self.active] + self.per_eval > self.max_queries
            for j in self.active[over].tolist():
                self.reason[j] = "budget"
            self.active = self.active[~over]
        return self.active

    def record(self, i: int, x: torch.Tensor, p: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        """Book evaluation ``i`` (0-based) of the active classes: iterates ``x`` (K, ...) (all classes),
        their released confidence ``p`` and ``cost`` (K',) (CPU). Returns which active classes go on
        (K',) bool; the others have their stop reason set. Call :meth:`advance` after the update."""
        active, ia = self.active, self.active.to(x.device)
        self.used[active] += self.per_eval
        better = cost < self.best_cost[active]
        self.best_cost[active] = torch.where(better, cost, self.best_cost[active])
        self.best_p[active] = torch.where(better, p, self.best_p[active])
        self.best_x[ia[better.to(x.device)]] = x[ia[better.to(x.device)]]
        self.since[active] = torch.where(better, 0, self.since[active] + 1)
        at_threshold = cost <= self.threshold
        stalled = self.since[active] >= self.patience
        stop = at_threshold | stalled | (i == self.steps)
        for j in torch.nonzero(stop).flatten().tolist():
            why = "threshold" if at_threshold[j] else "patience" if stalled[j] else "steps"
            self.reason[int(active[j])] = why
        return ~stop

    def advance(self, keep: torch.Tensor) -> None:
        """Count one update for the active classes that ``keep`` (K',) bool marks; drop the rest."""
        self.done[self.active[keep]] += 1
        self.active = self.active[keep]
