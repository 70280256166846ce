"""Square Attack: score-based black-box random search with square-shaped updates.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020. Only the model's scores are used (no gradients).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bastion.attacks.base import Attack, check_positive, is_success
from bastion.attacks.losses import margin_loss
from bastion.errors import AttackError, ThreatModelError
from bastion.model import Classifier
from bastion.rng import Randomness, integers
from bastion.rng import rows as rows_of
from bastion.threat import Norm, ThreatModel

__all__ = ["Square"]

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # p halves past each (in 1/10000 of the budget)


def _p(p_init: float, it: int, n_queries: int) -> float:
    scaled = int(it / n_queries * 10000)
    return p_init / 2 ** sum(scaled > k for k in _SCHEDULE)


def _window(p: float, h: int, w: int, min_side: int, odd: bool) -> tuple[int, int]:
    if h == 1:  # tabular rows (N, 1, 1, D): a strip covering a p fraction of the features
        return 1, min(max(round(p * w), min_side), w)
    s = max(round(math.sqrt(p * h * w)), min_side)
    s += int(odd and s % 2 == 0)
    return min(s, h), min(s, w)


def _pseudo_gaussian(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Concentric rectangles weighted 1/(k+1)^2 around the centre (the paper's L2 building block)."""
    if h == 0 or w == 0:
        return torch.zeros(h, w, device=device)
    k = torch.arange(max(h, w) // 2 + 1, device=device)
    tail = (1.0 / (k + 1.0) ** 2).flip(0).cumsum(0).flip(0)
    dh = (torch.arange(h, device=device) - h // 2).abs()
    dw = (torch.arange(w, device=device) - w // 2).abs()
    return tail[torch.maximum(dh[:, None], dw[None, :])]


def _meta_pattern(h: int, w: int, split_rows: bool, device: torch.device) -> torch.Tensor:
    """Two opposite-signed pseudo-Gaussian halves, unit L2 norm; shape (h, w)."""
    if split_rows:
        pat = torch.cat([_pseudo_gaussian(h // 2, w, device), -_pseudo_gaussian(h - h // 2, w, device)], 0)
    else:
        pat = torch.cat([_pseudo_gaussian(h, w // 2, device), -_pseudo_gaussian(h, w - w // 2, device)], 1)
    return pat / pat.norm().clamp_min(1e-12)


def _l2n(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


class Square(Attack):
    """Square Attack (linf and l2). Each input costs at most ``restarts * n_queries`` model queries.

    Minimises the margin ``z_y - max_{i!=y} z_i`` (untargeted) or the cross-entropy of the target
    (targeted) by random square updates whose area follows the paper's schedule from ``p_init``.
    Inputs are images (N, C, H, W); (N, D) rows and (N, H, W) maps are treated as (N, 1, 1, D), (N, 1, H, W).
    """

    name = "square"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "scores"

    def __init__(self, n_queries: int = 5000, p_init: float = 0.8, restarts: int = 1) -> None:
        check_positive("n_queries", n_queries, integer=True)
        check_positive("p_init", p_init)
        check_positive("restarts", restarts, integer=True)
        if p_init > 1:
            raise AttackError(f"p_init is a fraction of the input and must be <= 1, got {p_init}")
        self.n_queries = int(n_queries)
        self.p_init = float(p_init)
        self.restarts = int(restarts)

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
        if threat.unbounded:
            raise ThreatModelError("square needs a finite epsilon; use a minimum-norm attack for epsilon=inf")
        if x.dim() > 4:
            raise AttackError(
                f"square attacks (N, C, H, W) images or (N, D) rows, got shape {tuple(x.shape)}"
            )
        with torch.no_grad():
            x4 = x.reshape(x.shape[0], 1, 1, -1) if x.dim() == 2 else x.reshape(x.shape[0], -1, *x.shape[-2:])
            best = x4.clone()
            best_loss = torch.full((x.shape[0],), math.inf, device=x.device)
            fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            for _ in range(self.restarts):
                idx = (~fooled).nonzero().flatten()
                if idx.numel() == 0:
                    break
                t = None if targets is None else targets[idx]
                adv, loss, ok = self._search(
                    model, x4[idx], y[idx], t, threat, x.shape, rows_of(generator, idx)
                )
                keep = ok | (loss < best_loss[idx])
                best[idx[keep]], best_loss[idx[keep]], fooled[idx[keep]] = adv[keep], loss[keep], ok[keep]
            return best.reshape(x.shape)

    def _search(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor | None,
        threat: ThreatModel,
        shape: torch.Size,
        generator: Randomness,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart on ``x`` (n, c, h, w); returns (best points, their loss, fooled)."""

        def evaluate(pts: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = model(pts.reshape(-1, *shape[1:]))
            ti = None if t is None else t[i]
            loss = -margin_loss(logits, y[i]) if ti is None else F.cross_entropy(logits, ti, reduction="none")
            return loss, is_success(logits, y[i], ti)

        n, c, _, w = x.shape
        eps, (low, high), linf = threat.epsilon, threat.bounds, threat.norm is Norm.LINF
        # linf starts from vertical stripes (every column moves by +-eps), the paper's cheap strong start
        init = self._signs((n, c, 1, w), x, generator) if linf else self._l2_init(x, generator)
        best = (x + eps * init).clamp(low, high)
        loss, fooled = evaluate(best, torch.arange(n, device=x.device))
        step = self._linf_step if linf else self._l2_step
        for it in range(self.n_queries - 1):  # the start point spent one query
            i = (~fooled).nonzero().flatten()
            if i.numel() == 0:
                break
            cand = step(
                x[i], best[i], _p(self.p_init, it, self.n_queries), eps, low, high, rows_of(generator, i)
            )
            new_loss, ok = evaluate(cand, i)
            better = (new_loss < loss[i]) | ok
            best[i[better]], loss[i[better]], fooled[i[better]] = cand[better], new_loss[better], ok[better]
        return best, loss, fooled

    @staticmethod
    def _signs(shape: tuple[int, ...], x: torch.Tensor, generator: Randomness) -> torch.Tensor:
        return integers(generator, 0, 2, shape, device=x.device).to(x.dtype) * 2 - 1

    @staticmethod
    def _mask(
        n: int, h: int, w: int, sh: int, sw: int, x: torch.Tensor, g: Randomness
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random sh x sw window per sample: mask (n, 1, h, w) and its local row/column indices."""
        top = integers(g, 0, h - sh + 1, (n, 1), device=x.device)
        left = integers(g, 0, w - sw + 1, (n, 1), device=x.device)
        rows = torch.arange(h, device=x.device)[None] - top
        cols = torch.arange(w, device=x.device)[None] - left
        mask = ((rows >= 0) & (rows < sh))[:, None, :, None] & ((cols >= 0) & (cols < sw))[:, None, None, :]
        return mask.to(x.dtype), rows.clamp(0, sh - 1), cols.clamp(0, sw - 1)

    def _linf_step(
        self,
        x: torch.Tensor,
        best: torch.Tensor,
        p: float,
        eps: float,
        low: float,
        high: float,
        g: Randomness,
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        sh, sw = _window(p, h, w, 1, odd=False)
        mask = self._mask(n, h, w, sh, sw, x, g)[0]
        sign = self._signs((n, c, 1, 1), x, g)
        # a window already at the drawn corner would waste the query: flip its sign instead
        same = (((x + eps * sign).clamp(low, high) - best).abs() * mask).flatten(1).amax(1) < 1e-7
        sign[same] = -sign[same]
        return best * (1 - mask) + (x + eps * sign).clamp(low, high) * mask

    def _l2_init(self, x: torch.Tensor, g: Randomness) -> torch.Tensor:
        """A grid of pseudo-Gaussian blocks with random signs, scaled to unit L2 norm."""
        n, c, h, w = x.shape
        bh, bw = max(h // 5, 1), max(w // 5, 1)
        nh, nw = h // bh, w // bw
        top, left = (h - nh * bh) // 2, (w - nw * bw) // 2
        signs = self._signs((n, c, nh, nw), x, g).repeat_interleave(bh, 2).repeat_interleave(bw, 3)
        delta = torch.zeros_like(x)
        pattern = _meta_pattern(bh, bw, bh >= bw, x.device).to(x.dtype).repeat(nh, nw)
        delta[:, :, top : top + nh * bh, left : left + nw * bw] = signs * pattern
        return delta / _l2n(delta).clamp_min(1e-12)

    def _l2_step(
        self,
        x: torch.Tensor,
        best: torch.Tensor,
        p: float,
        eps: float,
        low: float,
        high: float,
        g: Randomness,
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        sh, sw = _window(p, h, w, 3, odd=True)
        delta = best - x
        m1, rows, cols = self._mask(n, h, w, sh, sw, x, g)
        m2 = self._mask(n, h, w, sh, sw, x, g)[0]
        both = torch.maximum(m1, m2)
        # mass from window 2 moves into window 1, so the total stays on the eps-sphere
        budget = ((eps**2 - _l2n(delta) ** 2).clamp_min(0) / c + _l2n(delta * both) ** 2).sqrt()
        patterns = torch.stack(
            [_meta_pattern(sh, sw, True, x.device), _meta_pattern(sh, sw, False, x.device)]
        )
        if sh == sw:  # the paper's random transpose
            choice = integers(g, 0, 2, (n,), device=x.device)
        else:
            choice = torch.full((n,), int(sh < sw), device=x.device)
        placed = patterns.to(x.dtype)[choice[:, None, None], rows[:, :, None], cols[:, None, :]][:, None] * m1
        old = delta * m1
        new = placed * self._signs((n, c, 1, 1), x, g) + old / old.pow(2).sum((2, 3), True).sqrt().add(1e-12)
        new = new / new.pow(2).sum((2, 3), True).sqrt().clamp_min(1e-12) * budget
        delta = delta * (1 - both) + new
        return (x + eps * delta / _l2n(delta).clamp_min(1e-12)).clamp(low, high)
