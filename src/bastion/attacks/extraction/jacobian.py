"""Jacobian-based dataset augmentation: a substitute grown from a small seed set.

Papernot, McDaniel, Goodfellow, Jha, Celik, Swami, "Practical Black-Box Attacks against Machine
Learning", AsiaCCS 2017 (Algorithm 1). Start from a few seed inputs labelled by the victim; each round
trains the substitute F on everything labelled so far and adds, for every input x with victim label
O(x), the point ``x + lambda * sign(d F(x)[O(x)] / dx)`` (clipped to the bounds): a step along the
substitute's own gradient towards where its decision for that class changes, which is where new
victim labels teach it the most. The victim is only ever queried for answers, never for gradients.

- ``step_size`` is lambda; with ``sign_period`` tau the sign flips every tau rounds (the paper's
  periodic step size, which keeps the set from drifting out of the data's range).
- ``reservoir`` kappa (the paper's reservoir sampling): each round augments only kappa inputs drawn at
  random from the set, so queries grow by kappa per round instead of doubling.

Rounds continue until the budget is spent (the last round is cut to fit), so ``queries == budget``
whenever the seed set fits in it; the curve reuses the queries like Knockoff's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bastion.attacks.base import check_positive
from bastion.attacks.extraction._oracle import Oracle
from bastion.attacks.extraction._training import CloneTraining, check_output, fit_clone, targets_for
from bastion.attacks.extraction.base import ExtractionAttack, Progress, Queried
from bastion.attacks.extraction.clone import small_cnn
from bastion.attacks.extraction.knockoff import DEFAULT_BUDGETS
from bastion.model import Classifier

__all__ = ["JacobianAugmentation"]


class JacobianAugmentation(ExtractionAttack):
    """Papernot et al.'s substitute training; hyperparameters at construction, :meth:`run` attacks
    (the pool is the seed data: a Dataset or (N, ...) tensor whose labels are never used).

    ``seed_size`` inputs are drawn (seeded) from the seed data; ``output`` is ``labels`` (the paper's
    setting) or ``probs``; ``clone`` a factory of untrained modules (default :func:`small_cnn`).
    """

    name = "jacobian"

    def __init__(
        self,
        output: str = "labels",
        *,
        seed_size: int = 150,
        step_size: float = 0.1,
        sign_period: int | None = 3,
        reservoir: int | None = None,
        budgets: tuple[int, ...] = DEFAULT_BUDGETS,
        clone: Callable[[], nn.Module] | None = None,
        training: CloneTraining | None = None,
        query_batch: int = 512,
    ) -> None:
        check_positive("seed_size", seed_size, integer=True)
        check_positive("step_size", step_size)
        check_positive("query_batch", query_batch, integer=True)
        for name, value in (("sign_period", sign_period), ("reservoir", reservoir)):
            if value is not None:
                check_positive(name, value, integer=True)
        self.output = check_output(output)
        self.seed_size, self.step_size = int(seed_size), float(step_size)
        self.sign_period, self.reservoir = sign_period, reservoir
        self.budgets = tuple(int(b) for b in budgets)
        self._clone = clone
        self.training = training or CloneTraining()
        self.query_batch = int(query_batch)

    def _query(
        self,
        oracle: Oracle,
        pool: Any,
        x_pool: torch.Tensor,
        generator: torch.Generator,
        seed: int,
        progress: Progress | None,
    ) -> Queried:
        """Grow the set from ``seed_size`` pool inputs until the budget is spent (see the module
        docstring); the rounds run are returned as a parameter."""
        bounds = oracle.victim.bounds
        pick = torch.randperm(x_pool.shape[0], generator=generator)[: min(self.seed_size, oracle.budget)]
        xs = x_pool[pick.to(x_pool.device)]
        answers = oracle.released(xs)
        low, high = bounds
        rounds = 0
        while oracle.left > 0:
            sub = fit_clone(
                self._factory(xs, answers),
                xs,
                targets_for(answers, self.output),
                bounds,
                self.training,
                seed + rounds,
                name="substitute",
            )
            lam = self.step_size
            if self.sign_period is not None and (rounds // self.sign_period) % 2 == 1:
                lam = -lam
            index = torch.arange(xs.shape[0])
            if self.reservoir is not None:
                index = torch.randperm(xs.shape[0], generator=generator)[: self.reservoir]
            index = index[: oracle.left].to(xs.device)
            new = _jacobian_step(sub, xs[index], answers[index].argmax(1), lam, low, high)
            new_answers = oracle.released(new)
            xs, answers = torch.cat([xs, new]), torch.cat([answers, new_answers])
            rounds += 1
            if progress is not None and oracle.left > 0:  # the base class reports the budget spent
                progress("queries", oracle.queries, oracle.budget)
        return Queried(xs, answers, {"rounds": rounds})

    def _factory(self, xs: torch.Tensor, answers: torch.Tensor) -> Callable[[], nn.Module]:
        if self._clone is not None:
            return self._clone
        shape, k = tuple(xs.shape[1:]), int(answers.shape[1])
        return lambda: small_cnn(shape, k)


def _jacobian_step(
    sub: Classifier, x: torch.Tensor, labels: torch.Tensor, lam: float, low: float, high: float
) -> torch.Tensor:
    """``x + lam * sign(d sub(x)[labels] / dx)`` clipped to [low, high]; x (N, ...), labels (N,)."""
    xg = x.clone().requires_grad_(True)
    logits = sub(xg)
    grad = torch.autograd.grad(logits.gather(1, labels[:, None].to(logits.device)).sum(), xg)[0]
    return (x + lam * grad.sign()).clamp(low, high).detach()
