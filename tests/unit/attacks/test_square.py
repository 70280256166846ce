"""Square Attack: strength on digits, exact query budgets, closed forms on a linear model."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.attacks.base import CountingClassifier
from bastion.attacks.evasion.square import Square, _p
from bastion.errors import AttackError, ThreatModelError
from bastion.threat import ThreatModel


def test_linf_digits_high_success_black_box(digits_model, digits_batch):
    x, y = digits_batch
    x_before = x.clone()
    result = Square(n_queries=200)(digits_model, x, y, ThreatModel("linf", 0.3))
    assert result.success_rate >= 0.8
    assert result.gradient_evals == 0
    assert bool((result.distance <= 0.3 + 1e-6).all())
    assert torch.equal(x, x_before)
    assert result.queries <= len(x) + len(x) * 200


def test_success_grows_with_queries_and_epsilon(digits_model, digits_batch):
    x, y = digits_batch
    few = Square(n_queries=5)(digits_model, x, y, ThreatModel("linf", 0.15)).success_rate
    many = Square(n_queries=150)(digits_model, x, y, ThreatModel("linf", 0.15)).success_rate
    small = Square(n_queries=40)(digits_model, x, y, ThreatModel("linf", 0.05)).success_rate
    large = Square(n_queries=40)(digits_model, x, y, ThreatModel("linf", 0.25)).success_rate
    assert many > few
    assert large > small


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_exact_query_budget_when_nothing_is_fooled(digits_model, digits_batch, norm):
    # at a negligible epsilon no input is fooled, so every input spends exactly its whole budget
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    threat = ThreatModel(norm, 1e-4)
    result = Square(n_queries=12)(digits_model, x, y, threat)
    assert not result.success.any()
    assert result.queries == len(x) + len(x) * 12
    assert Square(n_queries=1)(digits_model, x, y, threat).queries == 2 * len(x)
    assert Square(n_queries=5, restarts=2)(digits_model, x, y, threat).queries == len(x) + 2 * len(x) * 5


def test_l2_digits(digits_model, digits_batch):
    x, y = digits_batch
    result = Square(n_queries=150)(digits_model, x, y, ThreatModel("l2", 2.0))
    assert result.success_rate >= 0.8
    assert bool((result.distance <= 2.0 + 1e-5).all())


def test_targeted(digits_model, digits_batch):
    x, y = digits_batch[0][:16], digits_batch[1][:16]
    targets = (y + 1) % 10
    result = Square(n_queries=300)(digits_model, x, y, ThreatModel("linf", 0.3), targets=targets)
    assert result.success_rate >= 0.8
    assert torch.equal(result.predictions[result.success], targets[result.success])


def test_deterministic_for_a_seed(digits_model, digits_batch):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    threat = ThreatModel("l2", 1.0)
    a = Square(n_queries=30)(digits_model, x, y, threat, seed=7)
    b = Square(n_queries=30)(digits_model, x, y, threat, seed=7)
    c = Square(n_queries=30)(digits_model, x, y, threat, seed=8)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_raw_candidates_stay_in_ball_and_bounds(digits_model, digits_batch, norm):
    # call _run directly: the base class would hide an out-of-budget answer by projecting it
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    threat = ThreatModel(norm, 0.2 if norm == "linf" else 1.0)
    raw = Square(n_queries=20)._run(
        CountingClassifier(digits_model), x.clone(), y, threat, targets=None, generator=torch.Generator()
    )
    assert bool(threat.contains(x, raw).all())
    assert bool((threat.distance(x, raw) > 0.5 * threat.epsilon).all())  # it does use the budget


def test_linf_linear_model_matches_closed_form(linear_binary):
    # the linf-optimal perturbation of a linear model is a vertex of the box: Square reaches it,
    # and no input beyond |w.x + b| / ||w||_1 can be fooled at all
    model, x, y = linear_binary
    w = model.module.linear.weight[1] - model.module.linear.weight[0]
    b = model.module.linear.bias[1] - model.module.linear.bias[0]
    d_min = (x @ w + b).abs() / w.abs().sum()
    eps = float(d_min.median())
    result = Square(n_queries=300)(model, x, y, ThreatModel("linf", eps))
    assert not result.success[d_min > eps].any()
    assert bool(result.success[d_min < 0.9 * eps].all())


def test_l2_linear_model_tabular(linear_binary):
    model, x, y = linear_binary
    w = model.module.linear.weight[1] - model.module.linear.weight[0]
    b = model.module.linear.bias[1] - model.module.linear.bias[0]
    d_min = (x @ w + b).abs() / w.norm()
    eps = float(d_min.median())
    result = Square(n_queries=300)(model, x, y, ThreatModel("l2", eps))
    assert not result.success[d_min > eps].any()
    assert bool(result.success[d_min < 0.8 * eps].all())


def test_p_schedule_follows_the_paper():
    assert _p(0.8, 0, 10000) == 0.8
    assert _p(0.8, 10, 10000) == 0.8
    assert _p(0.8, 11, 10000) == 0.4
    assert _p(0.8, 300, 10000) == 0.1
    assert _p(0.8, 9999, 10000) == pytest.approx(0.8 / 512)
    assert _p(0.8, 2, 1000) == 0.4  # scaled by n_queries / 10000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_queries": 0},
        {"n_queries": 2.5},
        {"n_queries": True},
        {"p_init": 0},
        {"p_init": 1.5},
        {"restarts": 0},
    ],
)
def test_invalid_hyperparameters(kwargs):
    with pytest.raises(AttackError):
        Square(**kwargs)


def test_unbounded_epsilon_is_refused(digits_model, digits_batch):
    x, y = digits_batch
    with pytest.raises(ThreatModelError):
        Square(n_queries=5)(digits_model, x, y, ThreatModel("linf", math.inf))
