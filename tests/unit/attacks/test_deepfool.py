"""DeepFool: known answers on a linear model, the minimum-norm contract, errors."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.attacks import get
from bastion.attacks.evasion.deepfool import DeepFool
from bastion.errors import AttackError
from bastion.threat import ThreatModel


def analytic_distance(model, x: torch.Tensor, dual: float) -> torch.Tensor:
    """Distance from x to the hyperplane w.x + b = 0 in the norm whose dual is ``dual``."""
    weight, bias = model.module.linear.weight.detach(), model.module.linear.bias.detach()
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    return (x @ w + b).abs() / w.norm(p=dual)


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_finds_the_analytic_minimum_on_a_linear_model(linear_binary, norm, dual):
    model, x, y = linear_binary
    result = DeepFool()(model, x, y, ThreatModel(norm, math.inf))
    assert bool(result.success.all())
    ratio = result.distance / analytic_distance(model, x, dual)
    assert float(ratio.min()) >= 1 - 1e-4, "cannot beat the analytic minimum"
    assert float(ratio.max()) <= 1.01


def test_refinement_removes_the_overshoot(linear_binary):
    model, x, y = linear_binary
    threat = ThreatModel("l2", math.inf)
    coarse = DeepFool(refine_steps=0)(model, x, y, threat).distance / analytic_distance(model, x, 2.0)
    # Without bisection the linear model is crossed in one step scaled by exactly 1 + overshoot.
    assert torch.allclose(coarse, torch.full_like(coarse, 1.02), atol=1e-3)


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_no_success_below_the_analytic_minimum(linear_binary, norm, dual):
    model, x, y = linear_binary
    epsilon = 0.9 * float(analytic_distance(model, x, dual).min())
    result = DeepFool()(model, x, y, ThreatModel(norm, epsilon))
    assert not bool(result.success.any())
    assert torch.equal(result.x_adv, x)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_digits_unbounded(digits_model, digits_batch, norm):
    x, y = digits_batch
    result = DeepFool()(digits_model, x, y, ThreatModel(norm, math.inf))
    assert bool(result.success.all())
    assert bool((result.distance > 0).all())
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    assert torch.equal(x, digits_batch[0]), "the caller's input must not change"


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_finite_epsilon_succeeds_iff_distance_fits(digits_model, digits_batch, norm):
    x, y = digits_batch
    free = DeepFool()(digits_model, x, y, ThreatModel(norm, math.inf))
    epsilon = float(free.distance.median())
    capped = DeepFool()(digits_model, x, y, ThreatModel(norm, epsilon))
    fits = free.distance <= epsilon
    assert 0 < int(fits.sum()) < x.shape[0]
    assert torch.equal(capped.success, fits)
    assert torch.allclose(capped.distance[fits], free.distance[fits])
    assert bool((capped.distance[~fits] == 0).all())


def test_targeted_is_refused(digits_model, digits_batch):
    x, y = digits_batch
    with pytest.raises(AttackError, match="untargeted"):
        DeepFool()(digits_model, x, y, ThreatModel("l2", math.inf), targets=(y + 1) % 10)


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": 0}, {"steps": 2.5}, {"overshoot": -0.1}, {"candidates": 1}, {"refine_steps": -1}],
)
def test_invalid_hyperparameters(kwargs):
    with pytest.raises(AttackError):
        DeepFool(**kwargs)


def test_deterministic_and_registered(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", math.inf)
    a = get("deepfool")(digits_model, x[:8], y[:8], threat, seed=3)
    b = DeepFool()(digits_model, x[:8], y[:8], threat, seed=3)
    assert torch.equal(a.x_adv, b.x_adv)
    assert a.attack == "deepfool"
