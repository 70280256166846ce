"""HopSkipJump: labels only, per-sample query budgets, closed-form distances on a linear model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bastion.attacks.evasion.hopskipjump import HopSkipJump
from bastion.errors import AttackError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel


class OneHot:
    """The same classifier, but it reveals only its decision (one-hot of the argmax)."""

    def __init__(self, model: TorchClassifier) -> None:
        self.model, self.bounds = model, model.bounds

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float()


def _linear_minimum(linear_binary, dual_norm: float) -> torch.Tensor:
    model, x, _ = linear_binary
    w = model.module.linear.weight[1] - model.module.linear.weight[0]
    b = model.module.linear.bias[1] - model.module.linear.bias[0]
    return (x @ w + b).abs() / w.norm(p=dual_norm)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_digits_success_and_budget(digits_model, digits_batch, norm):
    x, y = digits_batch[0][:16], digits_batch[1][:16]
    result = HopSkipJump(max_queries=300)(digits_model, x, y, ThreatModel(norm, math.inf))
    assert result.success.all()
    assert result.gradient_evals == 0
    assert result.queries <= len(x) + len(x) * 300


def test_distance_shrinks_with_more_queries(digits_model, digits_batch):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    threat = ThreatModel("l2", math.inf)
    short = HopSkipJump(max_queries=200)(digits_model, x, y, threat)
    long = HopSkipJump(max_queries=1000)(digits_model, x, y, threat)
    assert long.success.all()
    assert float(long.distance.median()) < 0.9 * float(short.distance.median())


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_linear_model_reaches_the_closed_form_minimum(linear_binary, norm, dual):
    model, x, y = linear_binary
    d_min = _linear_minimum(linear_binary, dual)
    result = HopSkipJump(max_queries=2000)(model, x, y, ThreatModel(norm, math.inf))
    ratio = result.distance / d_min
    assert result.success.all()
    assert bool((ratio >= 1 - 1e-4).all())  # no adversarial can be closer than the hyperplane
    assert bool((ratio <= 1.10).all())


def test_grid_step_search(linear_binary):
    model, x, y = linear_binary
    result = HopSkipJump(max_queries=1500, stepsize_search="grid")(model, x, y, ThreatModel("l2", math.inf))
    assert result.success.all()
    assert bool((result.distance / _linear_minimum(linear_binary, 2.0) <= 1.2).all())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_uses_decisions_only(digits_model, digits_batch, norm):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    threat = ThreatModel(norm, math.inf)
    scores = HopSkipJump(max_queries=250)(digits_model, x, y, threat, seed=3)
    labels = HopSkipJump(max_queries=250)(OneHot(digits_model), x, y, threat, seed=3)
    assert torch.equal(scores.x_adv, labels.x_adv)
    assert scores.queries == labels.queries


@pytest.mark.parametrize("max_queries", [40, 150])
def test_per_sample_budget_is_exact(linear_binary, max_queries):
    model, x, y = linear_binary
    for i in range(3):
        result = HopSkipJump(max_queries=max_queries)(
            model, x[i : i + 1], y[i : i + 1], ThreatModel("l2", math.inf)
        )
        assert 1 + 0.8 * max_queries <= result.queries <= 1 + max_queries


def test_no_adversarial_start_returns_the_input():
    # a constant classifier: no random draw is ever adversarial, the input comes back unchanged
    constant = nn.Linear(4, 2)
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.copy_(torch.tensor([5.0, 0.0]))
    model = TorchClassifier(constant, num_classes=2)
    x = torch.full((3, 4), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    result = HopSkipJump(max_queries=30)(model, x, y, ThreatModel("l2", math.inf))
    assert torch.equal(result.x_adv, x)
    assert not result.success.any()
    assert result.queries == 3 + 3 * 30


def test_deterministic_for_a_seed(digits_model, digits_batch):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    threat = ThreatModel("l2", math.inf)
    a = HopSkipJump(max_queries=200)(digits_model, x, y, threat, seed=1)
    b = HopSkipJump(max_queries=200)(digits_model, x, y, threat, seed=1)
    c = HopSkipJump(max_queries=200)(digits_model, x, y, threat, seed=2)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_queries": 0},
        {"gradient_queries_init": -1},
        {"max_num_evals": 1.5},
        {"steps": 0},
        {"gamma": 0.0},
        {"stepsize_search": "linear"},
    ],
)
def test_invalid_hyperparameters(kwargs):
    with pytest.raises(AttackError):
        HopSkipJump(**kwargs)
