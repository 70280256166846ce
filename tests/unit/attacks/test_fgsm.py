"""FGSM: exact on a linear binary classifier (known answers), budget, EOT and validation."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.evasion.fgsm import FGSM
from bastion.errors import AttackError
from bastion.threat import ThreatModel


def _boundary_distances(model, x):
    """Closed-form minimal linf and l2 distances to the decision boundary of a 2-class linear model."""
    weight, bias = model.module.linear.weight, model.module.linear.bias
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    margin = (x.flatten(1) @ w + b).abs()
    return margin / w.abs().sum(), margin / w.norm(p=2)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_is_exact_on_a_linear_binary_model(linear_binary, norm):
    model, x, y = linear_binary
    d_inf, d_l2 = _boundary_distances(model, x)
    dist = d_inf if norm == "linf" else d_l2
    attack = FGSM()
    checked = 0
    for i in range(x.shape[0]):
        d = float(dist[i])
        if d * 1.05 >= 0.3:  # keep the bounds from binding: points lie in [0.35, 0.65]
            continue
        above = attack(model, x[i : i + 1], y[i : i + 1], ThreatModel(norm, d * 1.02))
        below = attack(model, x[i : i + 1], y[i : i + 1], ThreatModel(norm, d * 0.98))
        assert bool(above.success.all()), f"sample {i}: eps just above the boundary distance must succeed"
        assert not bool(below.success.any()), f"sample {i}: no adversarial exists below the boundary distance"
        assert float(above.distance[0]) <= d * 1.02 * (1 + 1e-5)
        checked += 1
    assert checked >= 10


def test_fgsm_uses_the_full_linf_budget_in_one_gradient_step(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", 0.05)
    result = FGSM()(digits_model, x, y, threat)
    assert result.gradient_evals == x.shape[0]
    # Every coordinate moves by exactly epsilon unless a bound clips it.
    delta = (result.x_adv - x).abs()
    interior = (x - 0.05 > 0) & (x + 0.05 < 1)
    assert torch.allclose(delta[interior], torch.full_like(delta[interior], 0.05), atol=1e-6)


def test_fgsm_l2_step_has_norm_epsilon_when_bounds_do_not_bind(linear_binary):
    model, x, y = linear_binary
    result = FGSM()(model, x, y, ThreatModel("l2", 0.05))
    # Inputs FGSM leaves untouched are the ones already fooled (none here: all are correctly classified).
    assert torch.allclose(result.distance, torch.full_like(result.distance, 0.05), rtol=1e-4)


def test_fgsm_targeted_moves_towards_the_target(digits_model, digits_batch):
    x, y = digits_batch
    targets = (y + 1) % 10
    threat = ThreatModel("linf", 0.2)
    result = FGSM()(digits_model, x, y, threat, targets=targets)
    with torch.no_grad():
        before = torch.log_softmax(digits_model(x), dim=1).gather(1, targets[:, None])
        after = torch.log_softmax(digits_model(result.x_adv), dim=1).gather(1, targets[:, None])
    assert bool((after > before).all())
    assert torch.equal(result.success, result.predictions == targets)


def test_fgsm_eot_counts_gradient_evaluations(digits_model, digits_batch):
    x, y = digits_batch
    result = FGSM(eot_samples=4)(digits_model, x, y, ThreatModel("linf", 0.05))
    assert result.gradient_evals == 4 * x.shape[0]


@pytest.mark.parametrize("eot", [0, -1, 1.5, True])
def test_fgsm_rejects_bad_eot_samples(eot):
    with pytest.raises(AttackError):
        FGSM(eot_samples=eot)
