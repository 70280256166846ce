"""HopSkipJump: decision-based black-box attack that walks along the decision boundary.

Chen, Jordan & Wainwright, "HopSkipJumpAttack: a query-efficient decision-based attack", IEEE S&P 2020.
Only the model's predicted labels are used: no scores, no gradients.
"""

from __future__ import annotations

import math

import torch

from bastion.attacks.base import Attack, check_positive, is_success
from bastion.errors import AttackError
from bastion.model import Classifier
from bastion.rng import Pieces, Randomness, rows, uniform
from bastion.threat import Norm, ThreatModel

__all__ = ["HopSkipJump"]

_INIT_TRIES = 100  # random uniform draws looking for a first adversarial (as ART's init_size)
_MAX_HALVINGS = 30  # geometric step search gives up past this (the boundary point itself is adversarial)
_CHUNK = 1 << 22  # floats per batch of Monte-Carlo probes, bounds memory on large inputs
_PROBE_FLOATS = 1 << 16  # floats per piece of one example's probes (a fixed piece: see gradient)


class HopSkipJump(Attack):
    """HopSkipJump (l2 and linf), minimum norm: returns the closest adversarial found per input.

    Each input costs at most ``max_queries`` model queries; the number of Monte-Carlo probes of
    iteration ``j`` is ``min(gradient_queries_init * sqrt(j), max_num_evals)``, clipped to the budget
    left; ``steps`` caps the number of iterations. ``stepsize_search`` is ``"geometric"`` (the paper's
    default) or ``"grid"`` (20 log-spaced steps, the largest adversarial one kept). The start is a
    uniform random adversarial draw (up to 100 tries): inputs without one come back unchanged, which
    makes targeted runs weak unless the target class is easy to hit at random.
    """

    name = "hopskipjump"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "decisions"
    minimum_norm = True

    def __init__(
        self,
        max_queries: int = 5000,
        gradient_queries_init: int = 100,
        max_num_evals: int = 1000,
        steps: int = 64,
        gamma: float = 1.0,
        stepsize_search: str = "geometric",
    ) -> None:
        for name, value in [
            ("max_queries", max_queries),
            ("gradient_queries_init", gradient_queries_init),
            ("max_num_evals", max_num_evals),
            ("steps", steps),
        ]:
            check_positive(name, value, integer=True)
        check_positive("gamma", gamma)
        if stepsize_search not in ("geometric", "grid"):
            raise AttackError(f"stepsize_search must be 'geometric' or 'grid', got {stepsize_search!r}")
        self.max_queries = int(max_queries)
        self.gradient_queries_init = int(gradient_queries_init)
        self.max_num_evals = int(max_num_evals)
        self.steps = int(steps)
        self.gamma = float(gamma)
        self.stepsize_search = stepsize_search

    def _run(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        targets: torch.Tensor | None,
        generator: Randomness,
    ) -> torch.Tensor:
        with torch.no_grad():
            return _HSJ(self, model, x, y, targets, threat, generator).run()


class _HSJ:
    """The state of one call (``HopSkipJump`` itself stays free of per-call state); works on (n, d)."""

    def __init__(
        self,
        cfg: HopSkipJump,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        threat: ThreatModel,
        g: Randomness,
    ) -> None:
        self.cfg, self.model, self.shape, self.y, self.targets, self.g = cfg, model, x.shape, y, targets, g
        self.x = x.flatten(1)
        self.n, self.d = self.x.shape
        self.low, self.high = threat.bounds
        self.linf = threat.norm is Norm.LINF
        # the paper's binary-search tolerance; delta = gamma / d * distance for both norms
        self.theta = cfg.gamma / (self.d**2 if self.linf else self.d**1.5)
        self.spent = torch.zeros(self.n, dtype=torch.long, device=x.device)

    def left(self, i: torch.Tensor) -> torch.Tensor:
        return self.cfg.max_queries - self.spent[i]

    def adv(self, pts: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Labels-only oracle for points (m, d) of samples ``i`` (m,); charges each sample's budget."""
        self.spent.index_add_(0, i, torch.ones_like(i))
        logits = self.model(pts.reshape(-1, *self.shape[1:]))  # is_success reads only the argmax
        return is_success(logits, self.y[i], None if self.targets is None else self.targets[i])

    def dist(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.abs().amax(dim=1) if self.linf else delta.norm(dim=1)

    def bisect(self, i: torch.Tensor, far: torch.Tensor, tol: torch.Tensor, linf: bool) -> torch.Tensor:
        """Binary search between x[i] (clean) and adversarial ``far``; returns the adversarial end."""
        x = self.x[i]
        hi = self.dist(far - x) if linf else torch.ones(len(i), device=x.device)
        lo = torch.zeros_like(hi)

        def point(a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            if linf:  # shrink the linf box around x; a is an absolute radius
                return torch.minimum(torch.maximum(far[k], x[k] - a[:, None]), x[k] + a[:, None])
            return x[k] + a[:, None] * (far[k] - x[k])

        while True:
            k = ((hi - lo > tol) & (self.left(i) > 0)).nonzero().flatten()
            if k.numel() == 0:
                return point(hi, torch.arange(len(i), device=x.device))
            mid = (hi[k] + lo[k]) / 2
            ok = self.adv(point(mid, k), i[k])
            hi[k] = torch.where(ok, mid, hi[k])
            lo[k] = torch.where(ok, lo[k], mid)

    def boundary(self, i: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
        d = self.dist(far - self.x[i])
        tol = torch.clamp(d * self.theta, max=self.theta) if self.linf else torch.full_like(d, self.theta)
        return self.bisect(i, far, tol, self.linf)

    def gradient(
        self, i: torch.Tensor, xb: torch.Tensor, delta: torch.Tensor, k: torch.Tensor
    ) -> torch.Tensor:
        """Monte-Carlo estimate of the boundary normal at ``xb`` from ``k`` (m,) sign probes each."""
        m = len(i)
        s_frv, s_rv, s_f = torch.zeros_like(xb), torch.zeros_like(xb), torch.zeros(m, device=xb.device)
        # Each example's probes are summed in pieces of a fixed size (zero-padded past its own count), so
        # its float sums add up in the same order whatever the batch; examples go in groups for memory.
        per = max(1, _PROBE_FLOATS // self.d)
        group = max(1, _CHUNK // (per * self.d))
        for r0 in range(0, m, group):
            r = slice(r0, min(r0 + group, m))
            ir, xr, dr, kr = i[r], xb[r], delta[r], k[r]
            probes = Pieces(rows(self.g, ir), len(ir))  # per-example streams: the same probes in any group
            for start in range(0, int(kr.max()), per):
                if self.linf:
                    rv = probes.uniform(start, per, (self.d,), like=xr) * 2 - 1
                else:
                    rv = probes.normal(start, per, (self.d,), like=xr)
                rv = rv / rv.norm(dim=2, keepdim=True)
                pts = (xr[:, None] + dr[:, None, None] * rv).clamp(self.low, self.high)
                rv = (pts - xr[:, None]) / dr[:, None, None]
                valid = torch.arange(start, start + per, device=xb.device)[None] < kr[:, None]
                f = torch.zeros(len(ir), per, device=xb.device)
                f[valid] = self.adv(pts[valid], ir[:, None].expand(len(ir), per)[valid]).float() * 2 - 1
                rv = rv * valid[..., None]
                s_frv[r] += (f[..., None] * rv).sum(1)
                s_rv[r] += rv.sum(1)
                s_f[r] += f.sum(1)
        mean_f = s_f / k
        # baseline-subtracted estimate; when every probe agrees, fall back to +-mean direction
        grad = (
            torch.where((mean_f.abs() == 1)[:, None], mean_f[:, None] * s_rv, s_frv - mean_f[:, None] * s_rv)
            / k[:, None]
        )
        return grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def step(
        self, i: torch.Tensor, xb: torch.Tensor, update: torch.Tensor, dist: torch.Tensor, j: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step from boundary points ``xb`` along ``update``; returns (new points, moved (m,) bool)."""
        moved = torch.zeros(len(i), dtype=torch.bool, device=xb.device)
        if self.cfg.stepsize_search == "geometric":  # halve dist / sqrt(j) until still adversarial
            eps = dist / math.sqrt(j)
            for _ in range(_MAX_HALVINGS):
                k = (~moved & (self.left(i) > 0)).nonzero().flatten()
                if k.numel() == 0:
                    break
                ok = self.adv((xb[k] + eps[k, None] * update[k]).clamp(self.low, self.high), i[k])
                moved[k[ok]] = True
                eps[k[~ok]] /= 2
            return (xb + eps[:, None] * update).clamp(self.low, self.high), moved
        # grid: 20 log-spaced steps in one batch, keep the largest that stays adversarial
        k = (self.left(i) >= 20).nonzero().flatten()
        scales = torch.logspace(-4, 0, 20, device=xb.device)
        pts = (xb[k, None] + (dist[k, None] * scales)[..., None] * update[k, None]).clamp(self.low, self.high)
        ok = self.adv(pts.flatten(0, 1), i[k].repeat_interleave(20)).view(-1, 20)
        largest = (ok * torch.arange(1, 21, device=xb.device)).argmax(1)
        moved[k] = ok.any(dim=1)
        out = xb.clone()  # unmoved samples keep their boundary point
        out[k] = torch.where(moved[k, None], pts[torch.arange(len(k), device=xb.device), largest], xb[k])
        return out, moved

    def run(self) -> torch.Tensor:
        cfg, everyone = self.cfg, torch.arange(self.n, device=self.x.device)
        start, found = torch.zeros_like(self.x), torch.zeros(self.n, dtype=torch.bool, device=self.x.device)
        for _ in range(_INIT_TRIES):
            k = (~found & (self.left(everyone) > 0)).nonzero().flatten()
            if k.numel() == 0:
                break
            noise = self.low + (self.high - self.low) * uniform(
                rows(self.g, k), (len(k), self.d), like=self.x
            )
            ok = self.adv(noise, k)
            start[k[ok]], found[k[ok]] = noise[ok], True
        best = self.x.clone()
        i = found.nonzero().flatten()
        if i.numel() == 0:
            return best.view(self.shape)
        # blend the random start towards x (tolerance 1e-3 on the blend factor), then onto the boundary
        xb = self.boundary(
            i, self.bisect(i, start[i], torch.full((len(i),), 1e-3, device=self.x.device), False)
        )
        dist = self.dist(xb - self.x[i])
        best[i], best_dist = xb, torch.full((self.n,), math.inf, device=self.x.device)
        best_dist[i] = dist
        reserve = math.ceil(math.log2(1 / self.theta)) + 2  # room for one step and one boundary search
        for j in range(1, cfg.steps + 1):
            evals = min(int(cfg.gradient_queries_init * math.sqrt(j)), cfg.max_num_evals)
            n_evals = (self.left(i) - reserve).clamp(max=evals)
            keep = n_evals > 0
            i, xb, dist, n_evals = i[keep], xb[keep], dist[keep], n_evals[keep]
            if i.numel() == 0:
                break
            delta = (
                torch.full_like(dist, 0.1 * (self.high - self.low)) if j == 1 else cfg.gamma / self.d * dist
            )
            grad = self.gradient(i, xb, delta, n_evals)
            far, moved = self.step(i, xb, grad.sign() if self.linf else grad, dist, j)
            mv = moved.nonzero().flatten()
            if mv.numel():
                xb[mv] = self.boundary(i[mv], far[mv])
                dist[mv] = self.dist(xb[mv] - self.x[i[mv]])
            better = dist < best_dist[i]
            best[i[better]], best_dist[i[better]] = xb[better], dist[better]
        return best.view(self.shape)
