"""Carlini-Wagner L2 (Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", S&P 2017).

Minimises ``||x' - x||_2^2 + c * f(x')`` with Adam over ``w``, where
``x' = low + (high - low)(tanh(w) + 1)/2`` keeps every iterate inside the bounds without clipping, and ``f``
is the margin objective f6:
``max(Z_y - max_{i != y} Z_i, -kappa)`` (untargeted) or ``max(max_{i != t} Z_i - Z_t, -kappa)`` (targeted).
A per-sample binary search picks the trade-off constant ``c``; the smallest adversarial seen is kept.

Deviation from the paper: Adam's fixed step leaves the best iterate slightly past the decision boundary
(about 1% of the distance for inputs close to it), so a cheap final bisection (``refine_steps`` forward
passes) along ``x -> x_adv`` keeps the smallest scale whose margin still clears ``kappa``.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bastion.attacks.base import Attack, check_positive, differentiable
from bastion.attacks.losses import margin_loss
from bastion.model import Classifier
from bastion.threat import Norm, ThreatModel

__all__ = ["CarliniWagner"]

# atanh(+-1) is infinite: shrink the tanh range so inputs on the bounds map to finite w.
_SHRINK = 1 - 1e-6
_NO_UPPER = 1e10


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


class CarliniWagner(Attack):
    """C&W L2, minimum norm, untargeted or targeted (``targets``).

    - ``steps``: Adam iterations per binary-search step; ``learning_rate``: Adam's step size on ``w``.
    - ``binary_search_steps``, ``initial_const``: search over ``c`` starting at ``initial_const``.
    - ``confidence``: the margin ``kappa`` an adversarial must clear (larger: larger, surer perturbations).
    - ``abort_early``: stop a search step when the batch's objective stops decreasing.
    """

    name: ClassVar[str] = "cw-l2"
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.L2})
    access = "gradient"
    minimum_norm: ClassVar[bool] = True

    def __init__(
        self,
        steps: int = 100,
        binary_search_steps: int = 9,
        initial_const: float = 1e-2,
        learning_rate: float = 1e-2,
        confidence: float = 0.0,
        abort_early: bool = True,
        refine_steps: int = 10,
    ) -> None:
        check_positive("steps", steps, integer=True)
        check_positive("binary_search_steps", binary_search_steps, integer=True)
        check_positive("initial_const", initial_const)
        check_positive("learning_rate", learning_rate)
        check_positive("confidence", confidence, allow_zero=True)
        check_positive("refine_steps", refine_steps, integer=True, allow_zero=True)
        self.steps = int(steps)
        self.binary_search_steps = int(binary_search_steps)
        self.initial_const = float(initial_const)
        self.learning_rate = float(learning_rate)
        self.confidence = float(confidence)
        self.abort_early = bool(abort_early)
        self.refine_steps = int(refine_steps)

    def _run(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        low, high = threat.bounds
        n = x.shape[0]
        w0 = torch.atanh(((x - low) / (high - low) * 2 - 1) * _SHRINK)
        const = torch.full((n,), self.initial_const, device=x.device, dtype=x.dtype)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, _NO_UPPER)
        best_l2 = torch.full_like(const, float("inf"))
        best_adv = x.clone()
        for _ in range(self.binary_search_steps):
            # Restart from the input at every search step, as in the paper.
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.learning_rate)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            previous = float("inf")
            check_every = max(self.steps // 10, 1)
            for step in range(self.steps):
                x_new = low + (high - low) * (torch.tanh(w) + 1) / 2
                # margin_loss > 0 means adversarial; f6 is its negation, floored at -kappa.
                margin = margin_loss(differentiable(model(x_new)), y, targets)
                l2_sq = (x_new - x).flatten(1).pow(2).sum(dim=1)
                loss = l2_sq + const * (-margin).clamp_min(-self.confidence)
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                optimizer.step()
                with torch.no_grad():
                    # Success needs the margin to clear kappa, as in the objective.
                    adv = margin > self.confidence
                    l2 = l2_sq.detach().sqrt()
                    improved = adv & (l2 < best_l2)
                    best_l2 = torch.where(improved, l2, best_l2)
                    best_adv = torch.where(_view(improved, x), x_new.detach(), best_adv)
                    succeeded |= adv
                if self.abort_early and step % check_every == check_every - 1:
                    total = float(loss.detach().sum())
                    if total > previous * 0.9999:
                        break
                    previous = total
            # Success: shrink c towards the smallest that still works; failure: grow it (x10 until bracketed).
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            bracketed = upper < _NO_UPPER / 10
            const = torch.where(bracketed, (lower + upper) / 2, const * 10)
        best_adv = self._refine(model, x, best_adv, y, targets)
        if not threat.unbounded:
            # Larger than the budget means "no adversarial within epsilon": report the input itself.
            keep = threat.distance(x, best_adv) <= threat.epsilon
            best_adv = torch.where(_view(keep, x), best_adv, x)
        return best_adv

    @torch.no_grad()
    def _refine(
        self,
        model: Classifier,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Bisect ``t`` in [0, 1] for the smallest ``x + t (x_adv - x)`` whose margin exceeds ``kappa``."""
        lo = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        hi = torch.ones_like(lo)
        delta = x_adv - x
        for _ in range(self.refine_steps):
            mid = (lo + hi) / 2
            adv = margin_loss(model(x + _view(mid, x) * delta), y, targets) > self.confidence
            hi = torch.where(adv, mid, hi)
            lo = torch.where(adv, lo, mid)
        # Samples without an adversarial have delta = 0, so they stay at x whatever t is.
        # hi = 1 keeps x_adv itself rather than x + (x_adv - x), which may round differently.
        return torch.where(_view(hi < 1, x), x + _view(hi, x) * delta, x_adv)
