"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), a minimum-norm attack for linf and l2.

Each step linearises the model around the current point over the top ``candidates`` classes and jumps to
the closest linearised decision boundary. The step is scaled by ``1 + overshoot`` so that it crosses the
boundary instead of landing on it. Coordinates on a bound that the step would push further out are
left out of the linearisation (a box-aware variant; the paper ignores bounds). A short bisection along
the segment ``x -> x_adv`` then removes most of that overshoot, so the returned distance is close to the
smallest one on the segment.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bastion.attacks.base import Attack, check_positive, is_success
from bastion.errors import AttackError
from bastion.model import Classifier
from bastion.rng import Randomness
from bastion.threat import Norm, ThreatModel

__all__ = ["DeepFool"]


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


class DeepFool(Attack):
    """DeepFool, untargeted.

    - ``steps``: maximum linearisation steps per input.
    - ``overshoot``: each accumulated step is scaled by ``1 + overshoot``.
    - ``candidates``: the classes considered (the true one plus the most likely others at ``x``).
    - ``refine_steps``: bisection steps along ``x -> x_adv`` at the end (0 disables the refinement).
    """

    name: ClassVar[str] = "deepfool"
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.LINF, Norm.L2})
    access = "gradient"
    minimum_norm: ClassVar[bool] = True

    def __init__(
        self, steps: int = 50, overshoot: float = 0.02, candidates: int = 10, refine_steps: int = 10
    ) -> None:
        check_positive("steps", steps, integer=True)
        check_positive("overshoot", overshoot, allow_zero=True)
        check_positive("candidates", candidates, integer=True)
        check_positive("refine_steps", refine_steps, integer=True, allow_zero=True)
        if candidates < 2:
            raise AttackError(
                f"candidates must be >= 2 (the true class and at least one other), got {candidates}"
            )
        self.steps = int(steps)
        self.overshoot = float(overshoot)
        self.candidates = int(candidates)
        self.refine_steps = int(refine_steps)

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
        if targets is not None:
            raise AttackError("DeepFool is untargeted; use cw-l2 or fmn for targeted attacks")
        low, high = threat.bounds
        with torch.no_grad():
            logits = model(x)
        k = min(self.candidates, logits.shape[1])
        # The true class first, then the most likely others; fixed for the whole run as in the paper.
        classes = logits.scatter(1, y[:, None], float("inf")).topk(k, dim=1).indices
        r_total = torch.zeros_like(x)
        x_adv = x.clone()
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            idx = active.nonzero().flatten()
            if idx.numel() == 0:
                break
            xi = x_adv[idx].requires_grad_(True)
            z = model(xi)
            still = z.argmax(dim=1) == y[idx]
            # Inputs that crossed the boundary are done; the rest take one linearised step.
            active[idx[~still]] = False
            if not bool(still.any()):
                break
            diffs = z.gather(1, classes[idx]) - z.gather(1, y[idx, None])  # (n, k), column 0 is zero
            # One backward per candidate on the shared graph: on CPU this beat vmap (is_grads_batched)
            # and a replicated batch for conv nets, and it keeps memory at one graph.
            grads = torch.stack(
                [torch.autograd.grad(diffs[:, j].sum(), xi, retain_graph=j < k - 1)[0] for j in range(1, k)],
                dim=1,
            )[still]
            # Box-aware linearisation: a coordinate on a bound cannot move further out, so it does not count
            # towards the step. Without this, clipping eats part of every step and the iterate can approach
            # the boundary geometrically without ever crossing it.
            cur = xi.detach()[still, None]
            grads = grads.masked_fill(((cur <= low) & (grads < 0)) | ((cur >= high) & (grads > 0)), 0.0)
            f = diffs.detach()[still, 1:]
            flat = grads.flatten(2)
            dual = flat.abs().sum(dim=2) if threat.norm is Norm.LINF else flat.norm(dim=2)
            dist = f.abs() / dual.clamp_min(1e-12)
            best = dist.argmin(dim=1)
            rows = torch.arange(best.shape[0], device=x.device)
            w = grads[rows, best]
            d = dist[rows, best] + 1e-6
            if threat.norm is Norm.LINF:
                step = _view(d, w) * w.sign()
            else:
                step = _view(d / flat[rows, best].norm(dim=1).clamp_min(1e-12), w) * w
            sel = idx[still]
            r_total[sel] += step
            x_adv[sel] = (x[sel] + (1 + self.overshoot) * r_total[sel]).clamp(low, high)
            # Keep the accumulated step in sync with the clipped point, so no hidden excess must be undone.
            r_total[sel] = (x_adv[sel] - x[sel]) / (1 + self.overshoot)
        x_adv = self._refine(model, x, x_adv, y)
        if not threat.unbounded:
            # Larger than the budget means "no adversarial within epsilon": report the input itself.
            x_adv = torch.where(_view(threat.distance(x, x_adv) <= threat.epsilon, x), x_adv, x)
        return x_adv

    @torch.no_grad()
    def _refine(
        self, model: Classifier, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """Bisect the scale ``t`` in [0, 1] of ``x + t (x_adv - x)`` for the smallest still adversarial."""
        found = is_success(model(x_adv), y, None)
        lo = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        hi = torch.ones_like(lo)
        delta = x_adv - x
        for _ in range(self.refine_steps):
            mid = (lo + hi) / 2
            adv = is_success(model(x + _view(mid, x) * delta), y, None)
            hi = torch.where(adv, mid, hi)
            lo = torch.where(adv, lo, mid)
        out = torch.where(_view(hi < 1, x), x + _view(hi, x) * delta, x_adv)
        # Not adversarial at the end of the search: return the input unchanged (minimum-norm contract).
        return torch.where(_view(found, x), out, x)
