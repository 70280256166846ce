"""Pre-checks on the data and the model, before any attack: the conditions that make attacks lie.

Carlini et al., "On Evaluating Adversarial Robustness" (2019), §4-5: probabilities instead of logits,
randomness, zero or non-finite gradients and non-differentiable graphs all make gradient attacks look
weaker than the attacker really is. And some audits measure nothing at all: a model at chance on clean
inputs (``BA108``), a factory's random initialisation (``BA109``), bounds guessed from the data's range, in
which epsilon means nothing anyone chose (``BA110``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bastion.attacks.losses import margin_loss
from bastion.audit.findings import Finding, finding
from bastion.data.dataset import Dataset
from bastion.loading import model_source
from bastion.model import Classifier, looks_like_probabilities
from bastion.threat import Bounds

__all__ = [
    "ModelFacts",
    "binomial_tail",
    "check_clean_accuracy",
    "check_data",
    "check_model",
    "check_provenance",
    "provenance",
]

_ZERO_GRADIENT_SHARE = 0.1  # above this share of inputs with an all-zero gradient, gradients are masked
_CHANCE_ALPHA = 0.01  # a model must beat chance at this significance level where the sample can show it


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


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly in log space (n up to millions)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0 or p >= 1.0:
        return float(p >= 1.0)
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    terms = [
        base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def check_clean_accuracy(correct: torch.Tensor, y: torch.Tensor) -> Finding | None:
    """BA108 when clean accuracy (``correct`` (N,) bool for labels ``y`` (N,)) is no better than chance.

    Chance is the share of the most frequent class (always answering it scores that). Where the sample
    could show a model beating chance (even a perfect score would be significant), the model must beat
    it in a one-sided exact binomial test at level 0.01; on a sample too small for that, only accuracy
    at or below chance fires. Inputs of a single class can tell nothing: None.
    """
    n = int(y.numel())
    counts = torch.bincount(y.detach().flatten().cpu())
    if n == 0 or int((counts > 0).sum()) < 2:
        return None
    k = int(correct.sum())
    chance = float(counts.max()) / n
    p_value = binomial_tail(k, n, chance)
    resolvable = chance**n < _CHANCE_ALPHA
    if (p_value <= _CHANCE_ALPHA) if resolvable else (k / n > chance):
        return None
    why = f"one-sided binomial p = {p_value:.2g}" if resolvable else f"too few inputs ({n}) to tell more"
    return finding(
        "BA108",
        f"{k} of {n} clean inputs correct ({k / n:.1%}); always answering the most frequent class scores "
        f"{chance:.1%} ({why})",
        accuracy=k / n,
        chance=chance,
        p_value=p_value,
        n=n,
    )


def provenance(model: object, data: Dataset) -> dict[str, Any]:
    """The report's ``model.source``: how the model was loaded (:func:`bastion.loading.model_source`;
    None fields when it was not loaded by bastion) and where its bounds came from: ``"data"`` when they
    are the bounds a loader inferred from the data's range (``data.meta["bounds_source"]``) and the
    model took them over, else ``"declared"`` (by the user, the zoo entry, a factory's ready classifier or
    the data format)."""
    src = model_source(model)
    bounds = getattr(model, "bounds", None)  # a bare nn.Module is wrapped with the data's bounds
    inherited = bounds is None or tuple(float(b) for b in bounds) == tuple(data.bounds)
    guessed = data.meta.get("bounds_source") == "data" and inherited and not (src and src.bounds_declared)
    block: dict[str, Any] = {"spec": None, "kind": None, "weights_file": None, "weights_loaded": None}
    if src is not None:
        block = {k: v for k, v in src.to_dict().items() if k in block}
    return {**block, "bounds_source": "data" if guessed else "declared"}


def check_provenance(source: dict[str, Any], bounds: Bounds, epsilons: Sequence[float] = ()) -> list[Finding]:
    """BA109 (a factory's random initialisation, ``source["weights_loaded"] is False``) and BA110 (bounds
    inferred from the data, ``source["bounds_source"] == "data"``) from a :func:`provenance` block;
    ``bounds`` are the audited model's, ``epsilons`` the configured budgets (for the detail)."""
    out = []
    if source.get("weights_loaded") is False:
        out.append(
            finding(
                "BA109",
                f"{source.get('spec') or 'the model'} was built by its factory without --weights, and two "
                "builds gave different parameters",
                spec=source.get("spec"),
            )
        )
    if source.get("bounds_source") == "data":
        low, high = bounds
        detail = f"bounds [{low:g}, {high:g}] are the range of the data, not declared"
        finite = [e for e in epsilons if math.isfinite(e)]
        if finite and high > low:
            detail += (
                f"; the largest epsilon, {max(finite):g}, is {max(finite) / (high - low):.3%} of that range"
            )
        out.append(finding("BA110", detail, bounds=[low, high], epsilons=list(finite)))
    return out
