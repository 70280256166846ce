"""Constrained PGD on the relaxed encoding (CPGD).

Simonetto et al., "A Unified Framework for Adversarial Attack and Defense in Constrained Feature
Space", IJCAI 2022: gradient ascent on the cross-entropy minus a penalty for violated feature
relations, inside the threat model, with a repair onto the constraints. Here:

* the variable is the model-space encoding with every categorical block relaxed to a probability
  vector (:mod:`bastion.tabular.encoding`);
* each step is the Frank-Wolfe form of projected ascent (Chen et al., AAAI 2020, "A Frank-Wolfe
  Framework for Efficient and Effective Adversarial Attacks"): a linear maximisation over the
  feasible set — per-feature intervals (mutability, direction, ``max_change``, range), the simplex of
  each category, and the weighted-L1 total budget, solved exactly as a fractional knapsack — then a
  convex step toward it. Iterates stay feasible without a projection, and on a linear model the
  first vertex is the exact LP optimum;
* every step both the iterate and the vertex are decoded, repaired (:func:`bastion.tabular.repair`)
  and queried; a record stops at its first valid misclassified candidate (early stopping), and a
  record never flipped returns its highest-loss valid candidate (what adversarial training wants).

Scalar features without any bound move at most ``unbounded_std`` standard deviations.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from bastion import rng
from bastion.attacks.base import check_positive
from bastion.errors import AttackError
from bastion.tabular.attacks.base import CountingTabularClassifier, TabularAttack
from bastion.tabular.constraints import feasible_box, repair, satisfied
from bastion.tabular.threat import TabularThreatModel

__all__ = ["CPGD"]


class CPGD(TabularAttack):
    """Constrained gradient attack for differentiable tabular models (TorchTabularClassifier)."""

    name: ClassVar[str] = "cpgd"

    def __init__(
        self,
        steps: int = 50,
        step_size: float = 0.5,
        restarts: int = 1,
        penalty: float = 1.0,
        unbounded_std: float = 3.0,
    ) -> None:
        check_positive("steps", steps, integer=True)
        check_positive("restarts", restarts, integer=True)
        check_positive("penalty", penalty, allow_zero=True)
        check_positive("unbounded_std", unbounded_std)
        if not 0.0 < step_size <= 1.0:
            raise AttackError(f"step_size is the Frank-Wolfe step in (0, 1], got {step_size!r}")
        self.steps, self.step_size, self.restarts = steps, step_size, restarts
        self.penalty, self.unbounded_std = penalty, unbounded_std

    def _run(
        self,
        model: CountingTabularClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: TabularThreatModel,
        *,
        generator: rng.Randomness,
    ) -> torch.Tensor:
        enc = model.encoder
        dev = x.device
        sigma, mean = enc.std.to(dev), enc.mean.to(dev)
        z0 = enc.relaxed_encode(x)
        low, high = feasible_box(x, threat)
        scal = enc.scalar_columns
        sj, sc = [j for j, _ in scal], [c for _, c in scal]
        # room to move each scalar feature, in standardised units (>= 0), capped where unbounded
        up = ((high[:, sj] - x[:, sj]) / sigma[sj]).clamp(max=self.unbounded_std)
        down = ((x[:, sj] - low[:, sj]) / sigma[sj]).clamp(max=self.unbounded_std)
        movable = threat.movable(dev)
        weights = threat.cost_weights(dev)
        a, rhs = threat.relation_matrix(dev)
        rel_scale = (a.abs() * sigma).sum(dim=1).clamp_min(1e-12)
        best, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=dev)
        with torch.no_grad():
            best_loss = F.cross_entropy(model(x).to(torch.float64), y, reduction="none")

        def vertex(g: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            """argmax over the feasible set of <g, s - z0> (fractional knapsack under the budget)."""
            gs = g[:, sc]
            extent = torch.where(gs > 0, up[rows], down[rows])
            gain = torch.zeros(len(rows), len(enc.schema), dtype=torch.float64, device=dev)
            cost = torch.zeros_like(gain)
            gain[:, sj] = gs.abs() * extent
            cost[:, sj] = weights[sj] * sigma[sj] * extent
            target = {}
            for j, s in enc.categorical_blocks():
                if not bool(movable[j]) or (threat.budget is not None and float(weights[j]) > threat.budget):
                    continue  # a category switch the budget can never pay for would only waste it
                gb, orig = g[:, s], z0[rows][:, s].argmax(dim=1)
                k = gb.argmax(dim=1)
                gain[:, j] = gb.gather(1, k[:, None]).squeeze(1) - gb.gather(1, orig[:, None]).squeeze(1)
                cost[:, j] = weights[j]
                target[j] = (s, orig, k)
            frac = (gain > 0).to(torch.float64)
            if threat.budget is not None:
                ratio = torch.where(
                    cost > 0, gain / cost.clamp_min(1e-300), torch.full_like(gain, float("inf"))
                )
                ratio = torch.where(gain > 0, ratio, torch.full_like(gain, -1.0))
                order = ratio.argsort(dim=1, descending=True)
                c_sorted = (cost * frac).gather(1, order)
                before = c_sorted.cumsum(dim=1) - c_sorted
                f_sorted = ((threat.budget - before) / c_sorted.clamp_min(1e-300)).clamp(0.0, 1.0)
                f_sorted = torch.where(c_sorted > 0, f_sorted, frac.gather(1, order))
                frac = torch.zeros_like(frac).scatter(1, order, f_sorted) * frac
            s_out = z0[rows].clone()
            s_out[:, sc] = z0[rows][:, sc] + torch.sign(gs) * extent * frac[:, sj]
            for j, (s, orig, k) in target.items():
                f = frac[:, j : j + 1]
                n = s.stop - s.start
                s_out[:, s] = (1 - f) * F.one_hot(orig, n).to(s_out) + f * F.one_hot(k, n).to(s_out)
            return s_out

        def penalty(z: torch.Tensor) -> torch.Tensor:
            if not a.shape[0]:
                return z.new_zeros(())
            xs = torch.zeros(len(z), len(enc.schema), dtype=z.dtype, device=dev)
            xs[:, sj] = z[:, sc] * sigma[sj] + mean[sj]
            resid = (xs @ a.T - rhs) / rel_scale
            ops = [r.op for r in threat.schema.relations]
            eq = torch.tensor([op == "==" for op in ops], device=dev)
            return torch.where(eq, resid.abs(), resid.clamp_min(0)).sum()

        def try_candidates(cands: list[torch.Tensor], rows: torch.Tensor) -> None:
            for zc in cands:
                open_rows = rows[~done[rows]]
                if not open_rows.numel():
                    return
                keep = ~done[rows]
                xc = repair(enc.decode(zc[keep]), x[open_rows], threat)
                with torch.no_grad():
                    logits = model(xc).to(torch.float64)
                valid = satisfied(xc, x[open_rows], threat)
                loss = F.cross_entropy(logits, y[open_rows], reduction="none")
                ok = valid & (logits.argmax(dim=1) != y[open_rows])
                better = ok | (valid & (loss > best_loss[open_rows]))
                best[open_rows[better]] = xc[better]
                best_loss[open_rows[better]] = loss[better]
                done[open_rows[ok]] = True

        for r in range(self.restarts):
            rows = (~done).nonzero().flatten()
            if not rows.numel():
                break
            z = z0.clone()
            if r > 0:  # random feasible start: a step toward the vertex of a random direction
                mine = rng.rows(generator, rows)
                g = rng.normal(mine, (len(rows), z0.shape[1]), like=z0)
                t = rng.uniform(mine, (len(rows), 1), like=z0)
                z[rows] = z0[rows] + t * (vertex(g, rows) - z0[rows])
            for step in range(self.steps):
                rows = (~done).nonzero().flatten()
                if not rows.numel():
                    break
                zr = z[rows].clone().requires_grad_(True)
                logits = model.logits_encoded(zr).to(torch.float64)
                loss = F.cross_entropy(logits, y[rows], reduction="sum") - self.penalty * penalty(zr)
                (g,) = torch.autograd.grad(loss, zr)
                s_v = vertex(g.detach(), rows)
                gamma = self.step_size * (1.0 - step / self.steps) + 1e-3
                z[rows] = zr.detach() + gamma * (s_v - zr.detach())
                try_candidates([s_v, z[rows]], rows)
        return best
