"""The shadow-model attack (Shokri, Stronati, Song & Shmatikov, "Membership inference attacks against
machine learning models", IEEE S&P 2017), with the sorted-output features of Salem et al. (ML-Leaks,
NDSS 2019).

Reference ("shadow") models are trained on population data whose membership the attacker knows (see
:mod:`bastion.attacks.inference.references`). Their outputs on the population, labelled IN/OUT by the
assignment, train one binary attack model per class: a logistic regression on the released probability
vector sorted in decreasing order, on a log scale (floored). The target's sorted outputs on x go through
the attack model of x's class; the score is that model's logit (higher = member). A class whose shadow
data lacks IN or OUT examples uses one attack model fitted on all classes.

Target queries: N rows. Shadow queries: R x P rows (P = population size), counted as
``reference_queries`` in ``params``.
"""

from __future__ import annotations

import torch

from bastion.attacks.inference._query import Victim
from bastion.attacks.inference.base import MembershipAttack, Scored
from bastion.attacks.inference.references import ReferenceModels
from bastion.errors import AttackError
from bastion.model import Classifier

__all__ = ["ShadowModels"]


def _features(log_probs: torch.Tensor, top: int) -> torch.Tensor:
    """Sorted (descending) log-probabilities (N, top)."""
    return log_probs.sort(dim=1, descending=True).values[:, :top]


def _fit_logistic(
    f: torch.Tensor, label: torch.Tensor, weight_decay: float, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardised L2-regularised logistic regression by L-BFGS; returns (mean, std, w, b)."""
    mean = f.mean(0)
    std = f.std(0).clamp_min(1e-6) if f.shape[0] > 1 else torch.ones_like(mean)
    z = (f - mean) / std
    w = torch.zeros(f.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    target = label.double()
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, target)
        loss = loss + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return mean, std, w.detach(), b.detach()


class ShadowModels(MembershipAttack):
    """Per-class logistic attack models on the ``top`` largest log-probabilities (default all)."""

    name = "shadow"

    def __init__(
        self, top: int | None = None, weight_decay: float = 1e-3, steps: int = 100, batch_size: int = 512
    ) -> None:
        if top is not None and top < 1:
            raise AttackError(f"top must be >= 1, got {top}")
        if weight_decay < 0 or steps < 1:
            raise AttackError("weight_decay must be >= 0 and steps >= 1")
        self.top = top
        self.weight_decay = float(weight_decay)
        self.steps = int(steps)
        self.batch_size = int(batch_size)

    def params(self) -> dict[str, object]:
        return {
            "top": self.top,
            "weight_decay": self.weight_decay,
            "steps": self.steps,
            "batch_size": self.batch_size,
        }

    def _score(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
        references: ReferenceModels,
    ) -> Scored:
        """Fit the attack models on the ``references``' population outputs, then score x (N, ...), y (N,).
        Deterministic (L-BFGS from zeros): ``generator`` is unused."""
        pop = references.population
        k = pop.num_classes
        top = min(self.top or k, k)
        feats, labels, classes, ref_queries = [], [], [], 0
        for i, ref in enumerate(references.models):
            v = Victim(ref, self.batch_size)
            feats.append(_features(v.log_probs(pop.x), top))
            labels.append(references.assignment.keep[i])
            classes.append(pop.y.cpu())
            ref_queries += v.queries
        f, lab, cls = torch.cat(feats), torch.cat(labels), torch.cat(classes)
        fallback = _fit_logistic(f, lab, self.weight_decay, self.steps)
        victim = Victim(model, self.batch_size)
        target = _features(victim.log_probs(x), top)
        score = torch.empty(x.shape[0], dtype=torch.float64)
        y_cpu = y.cpu()
        for c in y_cpu.unique().tolist():
            rows = cls == c
            both = bool(lab[rows].any()) and bool((~lab[rows]).any())
            mean, std, w, b = (
                _fit_logistic(f[rows], lab[rows], self.weight_decay, self.steps) if both else fallback
            )
            sel = y_cpu == c
            score[sel] = ((target[sel] - mean) / std) @ w + b
        return Scored(
            score, victim.queries, {"references": len(references), "reference_queries": ref_queries}
        )
