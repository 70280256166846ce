"""Judging a universal perturbation the way the paper does: fitted on one set, measured on held-out
inputs, beside random noise of the same norm (which a robust model shrugs off: a few %).

``evaluate_universal(model, UniversalGradient(), x_fit, x_test, threat)`` -> :class:`UniversalResult`.
The noise baseline draws ``noise_draws`` random patterns with exactly the perturbation's norm (linf:
random signs times the same linf norm; l2: a random Gaussian direction scaled to the same l2 norm) and
reports their mean fooling rate on the held-out inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from bastion.attacks.base import check_positive
from bastion.attacks.physical.universal import check_universal_threat, fooling_rate
from bastion.errors import DataError
from bastion.model import Classifier, predict
from bastion.threat import Norm, ThreatModel

__all__ = ["UniversalResult", "evaluate_universal", "random_like"]


class UniversalFitter(Protocol):
    name: str

    def params(self) -> dict[str, Any]: ...

    def fit(
        self, model: Classifier, x: torch.Tensor, threat: ThreatModel, *, seed: int = 0
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class UniversalResult:
    """``perturbation`` (C, H, W) inside the threat; fooling rates (share of labels changed) on the fitting
    set, on the held-out set and, for the same norm, of random noise on the held-out set; with labels,
    the held-out accuracy clean and under the perturbation."""

    perturbation: torch.Tensor
    norm: float
    fit_fooling_rate: float
    test_fooling_rate: float
    noise_fooling_rate: float
    clean_accuracy: float | None
    perturbed_accuracy: float | None
    attack: str
    params: dict[str, Any]
    threat: ThreatModel
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        t = self.threat
        return {
            "attack": self.attack,
            "params": self.params,
            "seed": self.seed,
            "seconds": self.seconds,
            "threat": {"norm": t.norm.value, "epsilon": t.epsilon, "bounds": list(t.bounds)},
            "perturbation_norm": self.norm,
            "fit_fooling_rate": self.fit_fooling_rate,
            "test_fooling_rate": self.test_fooling_rate,
            "noise_fooling_rate": self.noise_fooling_rate,
            "clean_accuracy": self.clean_accuracy,
            "perturbed_accuracy": self.perturbed_accuracy,
        }


def random_like(v: torch.Tensor, threat: ThreatModel, generator: torch.Generator) -> torch.Tensor:
    """Random noise with exactly ``v``'s norm in the threat's norm (linf: signs; l2: Gaussian direction)."""
    if threat.norm is Norm.LINF:
        signs = torch.randint(0, 2, v.shape, generator=generator).to(v) * 2 - 1
        return signs * v.abs().max()
    z = torch.randn(v.shape, generator=generator).to(v)
    return z / z.norm(p=2).clamp_min(1e-12) * v.norm(p=2)


def evaluate_universal(
    model: Classifier,
    attack: UniversalFitter,
    x_fit: torch.Tensor,
    x_test: torch.Tensor,
    threat: ThreatModel,
    *,
    y_test: torch.Tensor | None = None,
    seed: int = 0,
    noise_draws: int = 5,
) -> UniversalResult:
    """Fit ``attack``'s perturbation on ``x_fit`` (N, C, H, W), judge it on ``x_test`` (M, C, H, W)."""
    check_positive("noise_draws", noise_draws, integer=True)
    if x_fit.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"fit inputs {tuple(x_fit.shape[1:])} and test inputs {tuple(x_test.shape[1:])} differ"
        )
    check_universal_threat(threat, x_fit)
    t0 = time.perf_counter()
    v = attack.fit(model, x_fit, threat, seed=seed)
    g = torch.Generator().manual_seed(int(seed) + 1)
    noise = [fooling_rate(model, x_test, random_like(v, threat, g), threat) for _ in range(noise_draws)]
    clean_acc = perturbed_acc = None
    if y_test is not None:
        y = y_test.to(x_test.device)
        clean_acc = float((predict(model, x_test).argmax(1) == y).float().mean())
        moved = (x_test + v).clamp(*threat.bounds)
        perturbed_acc = float((predict(model, moved).argmax(1) == y).float().mean())
    norm = float(v.abs().max() if threat.norm is Norm.LINF else v.norm(p=2))
    return UniversalResult(
        perturbation=v, norm=norm, fit_fooling_rate=fooling_rate(model, x_fit, v, threat),
        test_fooling_rate=fooling_rate(model, x_test, v, threat), noise_fooling_rate=sum(noise) / len(noise),
        clean_accuracy=clean_acc, perturbed_accuracy=perturbed_acc, attack=attack.name,
        params=attack.params(), threat=threat, seed=int(seed), seconds=time.perf_counter() - t0,
    )  # fmt: skip
