"""Robust accuracy against epsilon, extended until it reaches (about) zero.

Each point is attacked from scratch (APGD-CE on every correctly classified input), not derived from the
previous point, so that a non-monotone curve exposes an optimiser that fails at some radii (BA202).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from bastion.attacks import get
from bastion.attacks.evasion.pgd import effective_epsilon
from bastion.audit.config import AuditConfig
from bastion.audit.probes import Clock, run_attack
from bastion.model import Classifier
from bastion.threat import Norm, ThreatModel

__all__ = ["epsilon_grid", "robustness_curve"]

_FACTORS = (0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)
ZERO = 0.01  # "about zero": the curve stops at the first point at or below 1%


def epsilon_grid(
    norm: Norm, eps_max: float, bounds: tuple[float, float], example: torch.Tensor
) -> list[float]:
    """Multiples of the largest configured epsilon, up to the widest perturbation the bounds allow."""
    widest = effective_epsilon(ThreatModel(norm, math.inf, bounds=bounds), example)
    grid = [eps_max * f for f in _FACTORS if eps_max * f < widest]
    return [*grid, widest]


def robustness_curve(
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    norm: Norm,
    eps_max: float,
    cfg: AuditConfig,
    clock: Clock,
    differentiable: bool,
    tick: Callable[[str, int, int], None],
) -> tuple[dict[str, Any], float]:
    """The curve as ``{"norm", "attack", "points": [{"epsilon", "robust_accuracy"}, ...]}`` and its seconds.

    A model without gradients is attacked with Square instead (images) or the transfer attack.
    """
    n = int(x.shape[0])
    name, attack = ("apgd-ce", get("apgd-ce", steps=50, eot_samples=cfg.eot_samples))
    if not differentiable:
        name, attack = (
            ("square", get("square", n_queries=1000)) if x.dim() == 4 else ("transfer", get("transfer"))
        )
    points = [{"epsilon": 0.0, "robust_accuracy": float(correct.float().mean())}]
    attacked = correct.nonzero().flatten()
    grid = epsilon_grid(norm, eps_max, clf.bounds, x[:1])
    seconds = 0.0
    for k, eps in enumerate(grid):
        tick(f"{norm.value} curve", k, len(grid))
        threat = ThreatModel(norm, eps, bounds=clf.bounds)
        if attacked.numel():
            res = run_attack(
                name,
                attack,
                clf,
                x,
                y,
                attacked,
                threat,
                seed=cfg.seed + 1000 + k,
                batch_size=cfg.batch_size,
                clock=clock,
                what="curve",
            )
            seconds += res.seconds
            robust = int((~res.success).sum())
        else:
            robust = 0
        points.append({"epsilon": eps, "robust_accuracy": robust / n})
        if robust / n <= ZERO:
            break
    tick(f"{norm.value} curve", len(grid), len(grid))
    return {"norm": norm.value, "attack": name, "points": points}, seconds
