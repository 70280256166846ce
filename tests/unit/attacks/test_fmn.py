"""FMN: known answers on a linear model, targets, the minimum-norm contract, errors."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.attacks import get
from bastion.attacks.evasion.fmn import FMN
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
    result = FMN()(model, x, y, ThreatModel(norm, math.inf))
    assert bool(result.success.all())
    ratio = result.distance / analytic_distance(model, x, dual)
    assert float(ratio.min()) >= 1 - 1e-4, "cannot beat the analytic minimum"
    assert float(ratio.max()) <= 1.01


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_no_success_below_the_analytic_minimum(linear_binary, norm, dual):
    model, x, y = linear_binary
    epsilon = 0.9 * float(analytic_distance(model, x, dual).min())
    result = FMN()(model, x, y, ThreatModel(norm, epsilon))
    assert not bool(result.success.any())
    assert torch.equal(result.x_adv, x)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_digits_unbounded_and_finite_epsilon(digits_model, digits_batch, norm):
    x, y = digits_batch
    free = FMN()(digits_model, x, y, ThreatModel(norm, math.inf))
    assert bool(free.success.all())
    assert bool((free.distance > 0).all())
    assert float(free.x_adv.min()) >= 0.0 and float(free.x_adv.max()) <= 1.0
    epsilon = float(free.distance.median())
    capped = FMN()(digits_model, x, y, ThreatModel(norm, epsilon))
    fits = free.distance <= epsilon
    assert 0 < int(fits.sum()) < x.shape[0]
    assert torch.equal(capped.success, fits)
    assert torch.allclose(capped.distance[fits], free.distance[fits])


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_targeted_hits_the_targets(digits_model, digits_batch, norm):
    x, y = digits_batch
    targets = (y + 3) % 10
    result = FMN()(digits_model, x, y, ThreatModel(norm, math.inf), targets=targets)
    assert bool(result.success.all())
    assert torch.equal(result.predictions, targets)


def test_more_steps_do_not_hurt(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("l2", math.inf)
    short = FMN(steps=10)(digits_model, x, y, threat)
    long = FMN(steps=100)(digits_model, x, y, threat)
    both = short.success & long.success
    assert float(long.distance[both].mean()) < float(short.distance[both].mean())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"alpha_init": 0.0},
        {"alpha_final": -1.0},
        {"gamma_init": 1.0},
        {"gamma_final": 0.0},
        {"steps": True},
    ],
)
def test_invalid_hyperparameters(kwargs):
    with pytest.raises(AttackError):
        FMN(**kwargs)


def test_deterministic_and_registered(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", math.inf)
    a = get("fmn")(digits_model, x[:8], y[:8], threat, seed=7)
    b = FMN()(digits_model, x[:8], y[:8], threat, seed=7)
    assert torch.equal(a.x_adv, b.x_adv)
    assert a.attack == "fmn"
