"""Pre-checks on the data and the model, before any attack: the conditions that make attacks lie.

Carlini et al., "On Evaluating Adversarial Robustness" (2019), §4-5: probabilities instead of logits,
randomness, zero or non-finite gradients and non-differentiable graphs all make gradient attacks look
weaker than the attacker really is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from bastion.attacks.losses import margin_loss
from bastion.audit.findings import Finding, finding
from bastion.model import Classifier, looks_like_probabilities
from bastion.threat import Bounds

__all__ = ["ModelFacts", "check_data", "check_model"]

_ZERO_GRADIENT_SHARE = 0.1  # above this share of inputs with an all-zero gradient, gradients are masked


@dataclass(frozen=True)
class ModelFacts:
    """What the pre-checks measured on a sample of clean inputs."""

    differentiable: bool
    randomised: bool
    probabilities: bool
    zero_gradient_fraction: float
    nonfinite_gradient_fraction: float
    n_checked: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_data(x: torch.Tensor, bounds: Bounds) -> list[Finding]:
    """BA106 (inputs outside ``bounds``) and BA107 (inputs standardised outside the model)."""
    out = []
    low, high = bounds
    lo, hi = float(x.min()), float(x.max())
    if lo < low - 1e-6 or hi > high + 1e-6:
        outside = int(((x < low - 1e-6) | (x > high + 1e-6)).flatten(1).any(1).sum())
        out.append(
            finding(
                "BA106",
                f"{outside} of {x.shape[0]} inputs have values outside [{low:g}, {high:g}] "
                f"(data spans [{lo:g}, {hi:g}])",
                inputs_outside=outside,
                data_min=lo,
                data_max=hi,
            )
        )
    channels = x.transpose(0, 1).flatten(1) if x.dim() == 4 else x.flatten(1).T
    mean, std = channels.mean(dim=1), channels.std(dim=1)
    if lo < 0 and bool((mean.abs() < 0.15).all()) and bool(((std - 1).abs() < 0.3).all()):
        out.append(
            finding(
                "BA107",
                f"per-channel means {[round(float(m), 3) for m in mean[:4]]} and standard deviations "
                f"{[round(float(s), 3) for s in std[:4]]} look standardised",
                mean=[float(m) for m in mean[:16]],
                std=[float(s) for s in std[:16]],
            )
        )
    return out


def check_model(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> tuple[ModelFacts, list[Finding]]:
    """Measure the model on clean inputs ``x`` (N, ...) with labels ``y``; findings BA101-BA105."""
    out: list[Finding] = []
    with torch.no_grad():
        first, second = model(x), model(x)
    scale = float(first.abs().max()) or 1.0
    randomised = bool((first - second).abs().max() > 1e-5 * scale)
    probabilities = looks_like_probabilities(first)
    if probabilities:
        out.append(finding("BA101", "every output row is non-negative and sums to 1"))
    if randomised:
        spread = float((first - second).abs().max())
        out.append(
            finding(
                "BA102", f"two passes on the same inputs differ by up to {spread:.3g}", max_difference=spread
            )
        )
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        differentiable = bool(logits.requires_grad)
        zero = nonfinite = 0.0
        if differentiable:
            (grad,) = torch.autograd.grad(margin_loss(logits, y).sum(), xg, allow_unused=True)
            if grad is None:
                differentiable = False
            else:
                flat = grad.flatten(1)
                nonfinite_rows = ~torch.isfinite(flat).all(dim=1)
                zero_rows = (flat == 0).all(dim=1)
                zero, nonfinite = float(zero_rows.float().mean()), float(nonfinite_rows.float().mean())
    if not differentiable:
        out.append(finding("BA105", "the output does not depend differentiably on the input"))
    if zero > _ZERO_GRADIENT_SHARE:
        out.append(
            finding(
                "BA103",
                f"the margin-loss gradient is exactly zero for {zero:.0%} of {x.shape[0]} clean inputs",
                zero_gradient_fraction=zero,
            )
        )
    if nonfinite > 0:
        out.append(
            finding(
                "BA104",
                f"the gradient has NaN or infinite entries for {nonfinite:.0%} of clean inputs",
                nonfinite_gradient_fraction=nonfinite,
            )
        )
    facts = ModelFacts(differentiable, randomised, probabilities, zero, nonfinite, int(x.shape[0]))
    return facts, out
