"""Knockoff Nets' adaptive strategy: a gradient bandit over clusters of the pool.

Orekondy, Schiele, Fritz, CVPR 2019. Each round draws a cluster (action) from softmax(H),
sends ``round_size`` of its inputs, scores the answers with the rewards ``cert`` (victim's top-1 minus
top-2 probability), ``div`` (released probability above its running mean, summed over classes) and
``loss`` (cross-entropy of an online clone against the answer), each standardised by its running mean and
deviation, and moves H by ``lr * (reward - baseline) * (1[a] - pi)``. The clusters are the pool's own
labels or a seeded k-means of its inputs (:func:`kmeans`): choosing them costs no victim queries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.extraction._oracle import Oracle
from bastion.attacks.extraction._training import targets_for

__all__ = ["Bandit", "bandit_queries", "kmeans"]


class Bandit(NamedTuple):
    """The bandit's settings: ``reward`` (cert, div, loss or all), ``round_size``, learning rate ``lr``,
    and the ``output`` the online clone trains on (probs or labels)."""

    reward: str
    round_size: int
    lr: float
    output: str


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


def bandit_queries(
    oracle: Oracle,
    x_pool: torch.Tensor,
    actions: torch.Tensor,
    build: Callable[[int], nn.Module],
    bandit: Bandit,
    g: torch.Generator,
    seed: int,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spend the oracle's whole budget round by round, each round on the pool inputs of one action
    (cluster) drawn from softmax(H); returns the inputs and released probabilities in order sent."""
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
            m = min(bandit.round_size, oracle.left, len(queues[a]) - used[a])
            xb = x_pool[queues[a][used[a] : used[a] + m]]
            used[a] += m
            p = oracle.released(xb)
            if online is None:  # the number of classes is known from the first answers
                online = build(int(p.shape[1])).to(x_pool.device)
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
            chosen = {"cert": [0], "div": [1], "loss": [2], "all": [0, 1, 2]}[bandit.reward]
            reward = float(scaled[chosen].sum())
            rounds += 1
            h += bandit.lr * (reward - baseline) * (F.one_hot(torch.tensor(a), len(queues)) - pi)
            baseline += (reward - baseline) / rounds
            xs.append(xb)
            ps.append(p)
            if opt is not None:
                _online_step(online, opt, xs, ps, g, bandit.output)
            if progress is not None:
                progress("queries", oracle.queries, oracle.budget)
    return torch.cat(xs), torch.cat(ps)


def _online_step(
    online: nn.Module,
    opt: torch.optim.Optimizer,
    xs: list[torch.Tensor],
    ps: list[torch.Tensor],
    g: torch.Generator,
    output: str,
) -> None:
    """One optimiser step of the bandit's online clone on the newest answers plus a replay sample."""
    x_all, p_all = torch.cat(xs[-20:]), torch.cat(ps[-20:])
    pick = torch.randperm(x_all.shape[0], generator=g)[:64].to(x_all.device)
    online.train()
    target = targets_for(p_all[pick], output)
    loss = -(target * F.log_softmax(online(x_all[pick]), 1)).sum(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    online.eval()
