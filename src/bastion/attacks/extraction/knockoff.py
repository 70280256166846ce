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
import torch.nn.functional as F
from torch import nn

from bastion.attacks.base import check_positive
from bastion.attacks.extraction._training import (
    CloneTraining,
    Oracle,
    as_inputs,
    check_output,
    finish,
    targets_for,
)
from bastion.attacks.extraction.active import uncertainty_queries
from bastion.attacks.extraction.clone import ExtractionResult, small_cnn
from bastion.errors import AttackError
from bastion.model import Classifier

__all__ = ["DEFAULT_BUDGETS", "KnockoffNets"]

DEFAULT_BUDGETS = (250, 500, 1000, 2000, 5000)
REWARDS = ("cert", "div", "loss", "all")
STRATEGIES = ("random", "adaptive", "uncertainty")


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, iters: int = 15) -> torch.Tensor:
    """Cluster ids (N,) of rows ``x`` (N, D) by Lloyd's algorithm from k seeded distinct rows."""
    centres = x[torch.randperm(x.shape[0], generator=generator)[:k].to(x.device)].clone()
    ids = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(iters):
        ids = torch.cdist(x, centres).argmin(1)
        for c in range(k):
            members = x[ids == c]
            if members.shape[0]:
                centres[c] = members.mean(0)
    return ids


class KnockoffNets:
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

    def params(self) -> dict[str, Any]:
        p = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"}
        return {**p, "budgets": list(self.budgets), "training": self.training.to_dict()}

    def run(
        self,
        victim: Classifier,
        pool: Any,
        budget: int,
        *,
        test: Any = None,
        reference: Classifier | None = None,
        seed: int = 0,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> ExtractionResult:
        """Spend exactly ``budget`` queries (rows) on ``victim`` with inputs from ``pool`` (a Dataset or
        (N, ...) tensor inside the victim's bounds), train the clones, measure them on ``test`` (a
        Dataset; fidelity against ``reference`` if given, else the victim, whose answers there are
        counted as ``evaluation_queries``). ``progress(stage, done, total)`` reports queries and clones.
        """
        check_positive("budget", budget, integer=True)
        x_pool, pool_name = as_inputs(pool, victim.bounds)
        if budget > x_pool.shape[0]:
            raise AttackError(f"the pool holds {x_pool.shape[0]} inputs, fewer than the budget of {budget}")
        g = torch.Generator().manual_seed(seed)
        oracle = Oracle(victim, budget, self.query_batch)
        if self.strategy == "random":
            order = torch.randperm(x_pool.shape[0], generator=g)[:budget].to(x_pool.device)
            x_q, released = x_pool[order], oracle.released(x_pool[order])
        elif self.strategy == "uncertainty":
            order = torch.randperm(x_pool.shape[0], generator=g).to(x_pool.device)
            shape = tuple(int(d) for d in x_pool.shape[1:])
            x_q, released = uncertainty_queries(
                oracle, x_pool, order, self._factory(shape), self.output, self.training,
                self.initial, seed, progress,
            )  # fmt: skip
        else:
            x_q, released = self._adaptive(oracle, x_pool, self._actions(pool, x_pool, g), g, seed, progress)
        if progress is not None:
            progress("queries", oracle.queries, budget)
        return finish(
            attack=f"{self.name}-{self.strategy}",
            params=self.params(),
            victim=victim,
            x_q=x_q,
            released=released,
            output=self.output,
            budgets=self.budgets,
            factory=self._clone,
            training=self.training,
            test=test,
            reference=reference,
            seed=seed,
            pool_name=pool_name,
            progress=None if progress is None else (lambda d, t: progress("clones", d, t)),
        )

    def _factory(self, shape: tuple[int, ...]) -> Callable[[int], nn.Module]:
        """A clone builder taking the number of classes (known once the first answers arrive)."""
        clone = self._clone
        return (lambda k: clone()) if clone is not None else (lambda k: small_cnn(shape, k))

    def _actions(self, pool: Any, x_pool: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.clusters is None and hasattr(pool, "y"):
            return pool.y.to(x_pool.device)
        return kmeans(x_pool.flatten(1), self.clusters or 10, g)

    def _adaptive(
        self,
        oracle: Oracle,
        x_pool: torch.Tensor,
        actions: torch.Tensor,
        g: torch.Generator,
        seed: int,
        progress: Callable[[str, int, int], None] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(x_pool.shape[0], generator=g).to(x_pool.device)
        queues = [order[actions[order] == a] for a in range(int(actions.max()) + 1)]
        used = [0] * len(queues)
        h = torch.zeros(len(queues))
        baseline, rounds = 0.0, 0
        stats = torch.zeros(3, 3)  # per reward: count, mean, M2 (Welford)
        running: torch.Tensor | None = None
        xs: list[torch.Tensor] = []
        ps: list[torch.Tensor] = []
        with torch.random.fork_rng(devices=[x_pool.device.index or 0] if x_pool.is_cuda else []):
            torch.manual_seed(seed)
            online: nn.Module | None = None
            opt: torch.optim.Optimizer | None = None
            while oracle.left > 0:
                open_ = torch.tensor([used[a] < len(q) for a, q in enumerate(queues)])
                pi = torch.softmax(h, 0) * open_
                pi = pi / pi.sum()
                a = int(torch.multinomial(pi, 1, generator=g))
                m = min(self.round_size, oracle.left, len(queues[a]) - used[a])
                xb = x_pool[queues[a][used[a] : used[a] + m]]
                used[a] += m
                p = oracle.released(xb)
                if online is None:  # the number of classes is known from the first answers
                    built = self._clone() if self._clone else small_cnn(tuple(x_pool.shape[1:]), p.shape[1])
                    online = built.to(x_pool.device)
                    opt = torch.optim.Adam(online.parameters(), lr=1e-3)
                with torch.no_grad():
                    q = torch.softmax(online(xb), 1)
                top = p.topk(min(2, p.shape[1]), dim=1).values
                running = p.mean(0) if running is None else running
                raw = torch.stack(
                    [
                        (top[:, 0] - top[:, -1]).mean(),
                        (p - running).clamp_min(0).sum(1).mean(),
                        -(p * q.clamp_min(1e-12).log()).sum(1).mean(),
                    ]
                ).cpu()
                running = 0.9 * running + 0.1 * p.mean(0)
                stats[0] += 1
                delta = raw - stats[1]
                stats[1] += delta / stats[0]
                stats[2] += delta * (raw - stats[1])
                std = (stats[2] / stats[0].clamp_min(1)).sqrt().clamp_min(1e-6)
                scaled = (raw - stats[1]) / std if rounds else torch.zeros(3)
                chosen = {"cert": [0], "div": [1], "loss": [2], "all": [0, 1, 2]}[self.reward]
                reward = float(scaled[chosen].sum())
                rounds += 1
                h += self.bandit_lr * (reward - baseline) * (F.one_hot(torch.tensor(a), len(queues)) - pi)
                baseline += (reward - baseline) / rounds
                xs.append(xb)
                ps.append(p)
                if opt is not None:
                    self._online_step(online, opt, xs, ps, g)
                if progress is not None:
                    progress("queries", oracle.queries, oracle.budget)
        return torch.cat(xs), torch.cat(ps)

    def _online_step(
        self,
        online: nn.Module,
        opt: torch.optim.Optimizer,
        xs: list[torch.Tensor],
        ps: list[torch.Tensor],
        g: torch.Generator,
    ) -> None:
        """One optimiser step of the bandit's online clone on the newest answers plus a replay sample."""
        x_all, p_all = torch.cat(xs[-20:]), torch.cat(ps[-20:])
        pick = torch.randperm(x_all.shape[0], generator=g)[:64].to(x_all.device)
        online.train()
        target = targets_for(p_all[pick], self.output)
        loss = -(target * F.log_softmax(online(x_all[pick]), 1)).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        online.eval()
