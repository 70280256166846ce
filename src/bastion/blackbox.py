"""The black-box victim layer: count (and cap) the queries an attack sends to a classifier.

>>> victim = QueryCounter(PolicyClassifier(model, "top1"), budget=5000)   # doctest: +SKIP
>>> clone = attack.run(victim, ...)                                       # doctest: +SKIP
>>> victim.queries, victim.calls                                          # doctest: +SKIP

A *query* is one input row sent to the victim: a call with a batch of N inputs costs N queries and one
call. The counter is transparent (same outputs, same gradient behaviour as what it wraps); put a
:class:`~bastion.defenses.output_policy.PolicyClassifier` or a remote model under it to make the victim
outputs-only.
"""

from __future__ import annotations

import torch
from torch import nn

from bastion.errors import QueryBudgetError
from bastion.model import Classifier, as_classifier
from bastion.threat import Bounds

__all__ = ["QueryCounter"]


class QueryCounter:
    """A Classifier that forwards to ``model`` and counts what it is asked.

    - ``queries``: input rows forwarded (a batch (N, ...) adds N); ``calls``: forward calls made.
    - ``budget`` (optional, rows): a call that would take ``queries`` past it raises
      :class:`~bastion.errors.QueryBudgetError` *before* anything is sent, and counts nothing; so
      ``queries <= budget`` always holds and the victim never sees the refused batch.
    - ``reset()`` sets both counts back to 0 (the budget applies again from 0).
    """

    def __init__(self, model: Classifier | nn.Module, *, budget: int | None = None) -> None:
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            raise QueryBudgetError(f"budget must be a whole number of queries >= 0 or None, got {budget!r}")
        self.model = as_classifier(model)
        self.bounds: Bounds = self.model.bounds
        self.budget = budget
        self.queries = 0
        self.calls = 0

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    @property
    def remaining(self) -> int | None:
        """Queries left in the budget (None without a budget)."""
        return None if self.budget is None else self.budget - self.queries

    def reset(self) -> None:
        """Forget the queries and calls counted so far."""
        self.queries = 0
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's logits (N, K) for ``x`` (N, ...), after counting N queries and one call."""
        n = int(x.shape[0])
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetError(
                f"query budget exhausted: {self.queries} of {self.budget} queries used and this call asks "
                f"for {n} more; raise the budget or make the attack spend fewer queries"
            )
        self.queries += n
        self.calls += 1
        return self.model(x)

    def released(self, x: torch.Tensor) -> torch.Tensor:
        """``softmax(self(x))`` (N, K) without gradients: the scores an outputs-only attacker sees.

        Counted like a call. Under a top-k or rounding policy this is the row-renormalised released
        matrix; read the policy wrapper's own ``released`` for the raw values."""
        with torch.no_grad():
            return torch.softmax(self(x), dim=1)

    def __repr__(self) -> str:
        budget = "" if self.budget is None else f", budget={self.budget}"
        return f"QueryCounter({self.model!r}, queries={self.queries}, calls={self.calls}{budget})"
