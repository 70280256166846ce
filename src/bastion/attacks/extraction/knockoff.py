"""Knockoff Nets: steal a classifier's function by querying a natural pool unlike its training data.

Orekondy, Schiele, Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models", CVPR 2019. The
attacker sends images from a pool (e.g. Fashion-MNIST against an MNIST model) and trains a clone on
the answers: soft labels when the API releases probabilities, hard labels when it releases only the
top-1. Two ways of choosing what to send:

- ``random``: a seeded random sample of the pool.
- ``adaptive``: the paper's gradient bandit over pool clusters (actions). Each round draws a cluster
  from softmax(H), sends ``round_size`` of its images, scores them with the rewards ``cert`` (victim's
  top-1 minus top-2 probability), ``div`` (released probability above its running mean, summed over
  classes) and ``loss`` (cross-entropy of an online clone against the answer), each standardised by
  its running mean and deviation, and moves H by ``bandit_lr * (reward - baseline) * (1[a] - pi)``.
  The clusters are the pool's own labels when it has them (``clusters=None`` and a Dataset pool, as
  in the paper, whose pools carry class labels) or a seeded k-means of the pool inputs
  (``clusters=K``, for unlabelled pools): choosing them costs no victim queries.
- ``uncertainty``: active learning (Pal et al. 2020, :mod:`bastion.attacks.extraction.active`): a
  random first round of ``initial`` share of the budget, then rounds that double the queries with the
  pool inputs a clone trained on the answers so far is least sure of. The strongest of the three
  against label-only APIs.

The queries are kept in the order they were made, and the curve trains a fresh clone on the first b of
them for each budget checkpoint b, so a 5k run also measures 250/500/1k/2k with the same 5k queries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bastion.attacks.base import check_positive
from bastion.attacks.extraction._oracle import Oracle
from bastion.attacks.extraction._training import CloneTraining, check_output
from bastion.attacks.extraction.active import uncertainty_queries
from bastion.attacks.extraction.adaptive import Bandit, bandit_queries, kmeans
from bastion.attacks.extraction.base import ExtractionAttack, Progress, Queried
from bastion.attacks.extraction.clone import small_cnn
from bastion.errors import AttackError

__all__ = ["DEFAULT_BUDGETS", "KnockoffNets"]

DEFAULT_BUDGETS = (250, 500, 1000, 2000, 5000)
REWARDS = ("cert", "div", "loss", "all")
STRATEGIES = ("random", "adaptive", "uncertainty")


class KnockoffNets(ExtractionAttack):
    """Knockoff Nets with hyperparameters at construction; :meth:`run` attacks a victim.

    ``output``: ``probs`` trains on the released probabilities, ``labels`` on their top-1 only.
    ``clone``: a factory returning an untrained module (default :func:`small_cnn` for the pool's shape).
    """

    name = "knockoff"

    def __init__(
        self,
        strategy: str = "random",
        output: str = "probs",
        *,
        budgets: tuple[int, ...] = DEFAULT_BUDGETS,
        clone: Callable[[], nn.Module] | None = None,
        training: CloneTraining | None = None,
        reward: str = "all",
        clusters: int | None = None,
        round_size: int = 10,
        bandit_lr: float = 0.1,
        query_batch: int = 512,
        initial: float = 0.05,
    ) -> None:
        if strategy not in STRATEGIES:
            raise AttackError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if not 0.0 < initial <= 1.0:
            raise AttackError(f"initial is a share of the budget in (0, 1], got {initial}")
        if reward not in REWARDS:
            raise AttackError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        for name, value in (("round_size", round_size), ("query_batch", query_batch)):
            check_positive(name, value, integer=True)
        if clusters is not None:
            check_positive("clusters", clusters, integer=True)
        check_positive("bandit_lr", bandit_lr)
        self.strategy, self.output, self.reward = strategy, check_output(output), reward
        self.budgets = tuple(int(b) for b in budgets)
        self._clone = clone
        self.training = training or CloneTraining()
        self.clusters, self.round_size, self.bandit_lr = clusters, int(round_size), float(bandit_lr)
        self.query_batch, self.initial = int(query_batch), float(initial)

    @property
    def attack_name(self) -> str:
        return f"{self.name}-{self.strategy}"

    def _query(
        self,
        oracle: Oracle,
        pool: Any,
        x_pool: torch.Tensor,
        generator: torch.Generator,
        seed: int,
        progress: Progress | None,
    ) -> Queried:
        """The whole budget on distinct pool inputs: a seeded random sample, the bandit's rounds, or
        uncertainty sampling's rounds (see the module docstring)."""
        budget, n = oracle.budget, x_pool.shape[0]
        if budget > n:
            raise AttackError(f"the pool holds {n} inputs, fewer than the budget of {budget}")
        if self.strategy == "random":
            order = torch.randperm(n, generator=generator)[:budget].to(x_pool.device)
            return Queried(x_pool[order], oracle.released(x_pool[order]))
        build = self._factory(tuple(int(d) for d in x_pool.shape[1:]))
        if self.strategy == "uncertainty":
            order = torch.randperm(n, generator=generator).to(x_pool.device)
            args = (self.output, self.training, self.initial, seed, progress)
            return Queried(*uncertainty_queries(oracle, x_pool, order, build, *args))
        bandit = Bandit(self.reward, self.round_size, self.bandit_lr, self.output)
        actions = self._actions(pool, x_pool, generator)
        return Queried(*bandit_queries(oracle, x_pool, actions, build, bandit, generator, seed, progress))

    def _factory(self, shape: tuple[int, ...]) -> Callable[[int], nn.Module]:
        """A clone builder taking the number of classes (known once the first answers arrive)."""
        clone = self._clone
        return (lambda k: clone()) if clone is not None else (lambda k: small_cnn(shape, k))

    def _actions(self, pool: Any, x_pool: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.clusters is None and hasattr(pool, "y"):
            return pool.y.to(x_pool.device)
        return kmeans(x_pool.flatten(1), self.clusters or 10, g)
