"""MoEvA: a gradient-free, constrained genetic search for tabular models without gradients.

Ghamizi et al., "Search-based adversarial testing and improvement of constrained credit scoring
systems", ESEC/FSE 2020 (MoEvA2), and Simonetto et al., IJCAI 2022: a multi-objective evolutionary
search per record over three objectives — the **misclassification margin** (true-class log-score
minus the best other one), the **constraint violation** and the **distance** to the original. Here:

* each record has its own population, initialised around the original inside the threat: every
  individual changes each free feature with its own random rate (sparse to dense), to a value drawn
  from the record's feasible interval (:func:`bastion.tabular.feasible_box`), some at its ends;
* offspring come from binary tournaments, uniform crossover and mutation (a Gaussian step for
  scalars, a fresh draw for categories); **every** individual is repaired onto the constraints
  (:func:`bastion.tabular.repair`), so the violation objective is 0 except where the original itself
  breaks a constraint; it still ranks first (Deb's constrained domination);
* survivors: (mu + lambda) by Pareto rank on (margin, distance) — the domination count of Fonseca
  and Fleming's MOGA, a cheap stand-in for MoEvA2's NSGA-III reference points —, then margin;
* one model call per generation over every open record's offspring (``queries`` grows by
  ``population`` per open record per generation, exactly); a record stops at its first valid
  misclassified individual (the cheapest of that generation); one never flipped returns its
  lowest-margin valid individual. Distance is the threat's budget cost, or the change relative to
  the feasible interval for features the budget does not price.

Scalar features without any bound move at most ``unbounded_std`` standard deviations (the model's
encoder statistics, else the attacked batch's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from bastion import rng
from bastion.attacks.base import check_positive
from bastion.errors import AttackError
from bastion.tabular.attacks.base import Access, CountingTabularClassifier, TabularAttack
from bastion.tabular.constraints import feasible_box, repair, satisfied
from bastion.tabular.threat import TabularThreatModel

__all__ = ["MoEvA"]


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M,) true-class score minus the best other class's: < 0 means misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return true - other


def _rank(invalid: torch.Tensor, margin: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """(n, M) position of each individual in its record's order (0 = best): valid first, then
    fewest dominators on (margin, distance), then lowest margin."""
    m_a, m_b = margin[:, :, None], margin[:, None, :]
    d_a, d_b = dist[:, :, None], dist[:, None, :]
    same = invalid[:, :, None] == invalid[:, None, :]
    pareto = (m_a <= m_b) & (d_a <= d_b) & ((m_a < m_b) | (d_a < d_b))
    dominates = (~invalid[:, :, None] & invalid[:, None, :]) | (same & pareto)  # [a, b]: a dominates b
    key = invalid.double() * 1e9 + dominates.sum(dim=1).double() * 1e3
    order = torch.sort(margin, dim=1, stable=True).indices
    order = order.gather(1, torch.sort(key.gather(1, order), dim=1, stable=True).indices)
    return torch.empty_like(order).scatter_(
        1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
    )


def _tournament(pos: torch.Tensor, g: rng.Randomness) -> torch.Tensor:
    """(n, P) parents: the better-ranked of two random individuals, P times per record (``g``: the
    records' rows)."""
    n, p = pos.shape
    a, b = rng.integers(g, 0, p, (n, 2, p), device=pos.device).unbind(1)
    return torch.where(pos.gather(1, a) <= pos.gather(1, b), a, b)


def _take(pop: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(n, k, D) individuals ``idx`` (n, k) of each record's population ``pop`` (n, P, D)."""
    return pop.gather(1, idx[:, :, None].expand(-1, -1, pop.shape[2]))


class MoEvA(TabularAttack):
    """Constrained genetic search (MoEvA2-style) for black-box tabular models (scores access)."""

    name: ClassVar[str] = "moeva"
    access: ClassVar[Access] = "scores"

    def __init__(
        self,
        population: int = 32,
        generations: int = 40,
        mutation: float = 0.25,
        step: float = 0.25,
        extreme: float = 0.2,
        unbounded_std: float = 3.0,
        feature_scale: Sequence[float] | None = None,
    ) -> None:
        check_positive("population", population, integer=True)
        check_positive("generations", generations, integer=True, allow_zero=True)
        check_positive("step", step)
        check_positive("unbounded_std", unbounded_std)
        for k, v in (("mutation", mutation), ("extreme", extreme)):
            if not 0.0 <= v <= 1.0:
                raise AttackError(f"{k} is a probability in [0, 1], got {v!r}")
        if population < 2:
            raise AttackError(f"population must be >= 2 (tournaments need two), got {population}")
        self.population, self.generations, self.mutation = population, generations, mutation
        self.step, self.extreme, self.unbounded_std = step, extreme, unbounded_std
        # a model without a fitted encoder: each feature's spread, for the search interval of features
        # without a finite range; None takes the attacked batch's own (TabularCascade passes the spread of
        # all the records it attacks, so a shard searches as the whole run would)
        self.feature_scale = None if feature_scale is None else tuple(float(v) for v in feature_scale)

    def _run(
        self,
        model: CountingTabularClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: TabularThreatModel,
        *,
        generator: rng.Randomness,
    ) -> torch.Tensor:
        n, d, p, dev = x.shape[0], x.shape[1], self.population, x.device
        enc = model.encoder
        if enc is not None:
            scale = enc.std.to(dev)
        elif self.feature_scale is not None:
            if len(self.feature_scale) != d:
                raise AttackError(f"feature_scale has {len(self.feature_scale)} values for {d} features")
            scale = torch.tensor(self.feature_scale, dtype=torch.float64, device=dev)
        else:
            scale = x.std(dim=0, unbiased=False) if n > 1 else x.abs()
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
        low, high = feasible_box(x, threat)
        low = torch.maximum(low, x - self.unbounded_std * scale)  # finite interval for unbounded features
        high = torch.minimum(high, x + self.unbounded_std * scale)
        integral, cat = threat.kind_masks(dev)
        low, high = torch.where(integral, low.ceil(), low), torch.where(integral, high.floor(), high)
        free = high > low  # (n, d)
        width = (high - low).clamp_min(1e-12)
        w = threat.cost_weights(dev)
        w = torch.where(w > 0, w.expand(n, d), 1.0 / width)  # (n, d) distance per unit change

        def rand(g: rng.Randomness, *shape: int) -> torch.Tensor:
            """Uniform draws, one row per record of ``g`` (its own stream)."""
            return rng.uniform(g, shape, like=x)

        def draw(rows: torch.Tensor, g: rng.Randomness, k: int) -> torch.Tensor:
            """(len(rows), k, d) values drawn from each record's interval, some at its ends."""
            lo, hi = low[rows, None, :], high[rows, None, :]
            u = rand(g, len(rows), k, d)
            ends = rand(g, len(rows), k, d) < self.extreme
            u = torch.where(ends, (u > 0.5).double(), u)
            v = lo + u * (hi - lo)
            pick = (lo + (rand(g, len(rows), k, d) * (hi - lo + 1)).floor()).clamp(max=hi)
            return torch.where(cat, pick, torch.where(integral & ~ends, v.round(), v))

        def evaluate(rows: torch.Tensor, pop: torch.Tensor) -> tuple[torch.Tensor, ...]:
            """Repair, then one model call: (pop, invalid, margin, distance), each per individual."""
            k = pop.shape[1]
            x_rep = x[rows].repeat_interleave(k, dim=0)
            flat = repair(pop.reshape(-1, d), x_rep, threat)
            with torch.no_grad():
                margin = _margin(model(flat).to(torch.float64), y[rows].repeat_interleave(k))
            invalid = ~satisfied(flat, x_rep, threat)
            dist = (threat.distance(x_rep, flat) * w[rows].repeat_interleave(k, dim=0)).sum(dim=1)
            return flat.view(-1, k, d), invalid.view(-1, k), margin.view(-1, k), dist.view(-1, k)

        best, best_margin = x.clone(), torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)

        def record(
            rows: torch.Tensor, pop: torch.Tensor, inv: torch.Tensor, mar: torch.Tensor, dis: torch.Tensor
        ) -> None:
            """Stop records at a valid misclassified individual (the cheapest); else keep the best margin."""
            flip = ~inv & (mar < 0)
            hit = flip.any(dim=1)
            cheapest = torch.where(flip, dis, torch.full_like(dis, float("inf"))).argmin(dim=1)
            lowest = torch.where(inv, torch.full_like(mar, float("inf")), mar).argmin(dim=1)
            pick = torch.where(hit, cheapest, lowest)
            m = mar.gather(1, pick[:, None]).squeeze(1)
            ok = hit | (~inv.gather(1, pick[:, None]).squeeze(1) & (m < best_margin[rows]))
            best[rows[ok]] = pop[ok, pick[ok]]
            best_margin[rows[ok]] = m[ok]
            done[rows[hit]] = True

        rows = free.any(dim=1).nonzero().flatten()  # nothing to search for a record with nothing to move
        if not rows.numel():
            return best
        g = rng.rows(generator, rows)
        rate = rand(g, len(rows), p, 1)
        start = torch.where(
            free[rows, None, :] & (rand(g, len(rows), p, d) < rate), draw(rows, g, p), x[rows, None, :]
        )
        pop, inv, mar, dis = evaluate(rows, start)
        record(rows, pop, inv, mar, dis)
        for _ in range(self.generations):
            keep = ~done[rows]
            rows, pop, inv, mar, dis = rows[keep], pop[keep], inv[keep], mar[keep], dis[keep]
            if not rows.numel():
                break
            r = len(rows)
            g = rng.rows(generator, rows)
            pos = _rank(inv, mar, dis)
            parent1, parent2 = _tournament(pos, g), _tournament(pos, g)
            child = torch.where(rand(g, r, p, d) < 0.5, _take(pop, parent1), _take(pop, parent2))
            mutate = free[rows, None, :] & (rand(g, r, p, d) < self.mutation)
            noise = rng.normal(g, (r, p, d), like=x)
            stepped = child + noise * self.step * width[rows, None, :]
            stepped = torch.minimum(torch.maximum(stepped, low[rows, None, :]), high[rows, None, :])
            child = torch.where(mutate, torch.where(cat, draw(rows, g, p), stepped), child)
            cpop, cinv, cmar, cdis = evaluate(rows, child)
            record(rows, cpop, cinv, cmar, cdis)
            pop, inv = torch.cat([pop, cpop], dim=1), torch.cat([inv, cinv], dim=1)
            mar, dis = torch.cat([mar, cmar], dim=1), torch.cat([dis, cdis], dim=1)
            survivors = _rank(inv, mar, dis).argsort(dim=1)[:, :p]
            pop = _take(pop, survivors)
            inv, mar, dis = inv.gather(1, survivors), mar.gather(1, survivors), dis.gather(1, survivors)
        return best
