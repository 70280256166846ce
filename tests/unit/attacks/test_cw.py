"""Carlini-Wagner L2: known answers on a linear model, confidence, targets, the minimum-norm contract."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.attacks import get
from bastion.attacks.evasion.cw import CarliniWagner
from bastion.attacks.losses import margin_loss
from bastion.errors import AttackError, ThreatModelError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

# Fewer steps: enough on the digits MLP and faster than the defaults.
FAST = {"steps": 50, "binary_search_steps": 5}


def analytic_l2(model, x: torch.Tensor) -> torch.Tensor:
    weight, bias = model.module.linear.weight.detach(), model.module.linear.bias.detach()
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    return (x @ w + b).abs() / w.norm()


def test_finds_the_analytic_minimum_on_a_linear_model(linear_binary):
    model, x, y = linear_binary
    result = CarliniWagner()(model, x, y, ThreatModel("l2", math.inf))
    assert bool(result.success.all())
    ratio = result.distance / analytic_l2(model, x)
    assert float(ratio.min()) >= 1 - 1e-4, "cannot beat the analytic minimum"
    assert float(ratio.max()) <= 1.01


def test_other_bounds_and_inputs_on_the_bounds(linear_binary):
    model, x, y = linear_binary
    shifted = TorchClassifier(model.module, bounds=(-1.0, 2.0), num_classes=2)
    # Half the coordinates on the bounds: atanh must stay finite there, and the answer is unchanged
    # because the analytic minimiser w * t only moves those coordinates inwards or along the bound.
    x = x[:8].clone()
    x[:, :8] = torch.where(torch.arange(8) % 2 == 0, -1.0, 2.0)
    with torch.no_grad():
        y = shifted(x).argmax(1)
    result = CarliniWagner(steps=200)(shifted, x, y, ThreatModel("l2", math.inf, bounds=(-1.0, 2.0)))
    assert bool(torch.isfinite(result.x_adv).all())
    assert bool(result.success.all())
    assert float(result.x_adv.min()) >= -1.0 and float(result.x_adv.max()) <= 2.0
    assert bool((result.distance >= analytic_l2(model, x) * (1 - 1e-4)).all())


def test_no_success_below_the_analytic_minimum(linear_binary):
    model, x, y = linear_binary
    epsilon = 0.9 * float(analytic_l2(model, x).min())
    result = CarliniWagner(**FAST)(model, x, y, ThreatModel("l2", epsilon))
    assert not bool(result.success.any())
    assert torch.equal(result.x_adv, x)


def test_linf_is_refused(digits_model, digits_batch):
    x, y = digits_batch
    with pytest.raises(ThreatModelError, match="l2"):
        CarliniWagner()(digits_model, x, y, ThreatModel("linf", 0.1))


def test_digits_unbounded_and_finite_epsilon(digits_model, digits_batch):
    x, y = digits_batch
    x, y = x[:16], y[:16]
    free = CarliniWagner(**FAST)(digits_model, x, y, ThreatModel("l2", math.inf))
    assert bool(free.success.all())
    assert bool((free.distance > 0).all())
    assert float(free.x_adv.min()) >= 0.0 and float(free.x_adv.max()) <= 1.0
    epsilon = float(free.distance.median())
    capped = CarliniWagner(**FAST)(digits_model, x, y, ThreatModel("l2", epsilon))
    fits = free.distance <= epsilon
    assert 0 < int(fits.sum()) < x.shape[0]
    assert torch.equal(capped.success, fits)
    assert torch.allclose(capped.distance[fits], free.distance[fits])


def test_confidence_buys_margin_with_distance(digits_model, digits_batch):
    x, y = digits_batch
    x, y = x[:16], y[:16]
    threat = ThreatModel("l2", math.inf)
    plain = CarliniWagner(**FAST)(digits_model, x, y, threat)
    sure = CarliniWagner(confidence=5.0, **FAST)(digits_model, x, y, threat)
    assert bool(plain.success.all()) and bool(sure.success.all())
    with torch.no_grad():
        margins = margin_loss(digits_model(sure.x_adv), y)
    assert float(margins.min()) > 5.0 - 1e-3
    assert float((sure.distance > plain.distance).float().mean()) >= 0.9


def test_targeted_hits_the_targets(digits_model, digits_batch):
    x, y = digits_batch
    x, y = x[:16], y[:16]
    targets = (y + 3) % 10
    attack = CarliniWagner(steps=100, binary_search_steps=5, initial_const=1.0)
    result = attack(digits_model, x, y, ThreatModel("l2", math.inf), targets=targets)
    assert bool(result.success.all())
    assert torch.equal(result.predictions, targets)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"binary_search_steps": 1.5},
        {"initial_const": 0.0},
        {"learning_rate": -1.0},
        {"confidence": -0.5},
        {"confidence": math.inf},
        {"refine_steps": -1},
    ],
)
def test_invalid_hyperparameters(kwargs):
    with pytest.raises(AttackError):
        CarliniWagner(**kwargs)


def test_deterministic_and_registered(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("l2", math.inf)
    a = get("cw-l2", **FAST)(digits_model, x[:8], y[:8], threat, seed=5)
    b = CarliniWagner(**FAST)(digits_model, x[:8], y[:8], threat, seed=5)
    assert torch.equal(a.x_adv, b.x_adv)
    assert a.attack == "cw-l2"
