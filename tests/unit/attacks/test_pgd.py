"""PGD: known answers on a linear model, strength invariants on digits, restarts, EOT, cost, validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.pgd import PGD
from bastion.errors import AttackError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

EPS = {"linf": [0.05, 0.1, 0.2], "l2": [0.25, 0.5, 1.0]}
LARGE = {"linf": 0.3, "l2": 3.0}
MODERATE = {"linf": 0.1, "l2": 0.5}


def test_pgd_linf_is_exact_on_a_linear_binary_model(linear_binary):
    model, x, y = linear_binary
    weight, bias = model.module.linear.weight, model.module.linear.bias
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    d_inf = (x @ w + b).abs() / w.abs().sum()
    for eps in (0.03, 0.05, 0.08):
        result = PGD(steps=20)(model, x, y, ThreatModel("linf", eps))
        clear = (d_inf - eps).abs() > 0.02 * eps
        assert torch.equal(result.success[clear], (d_inf < eps)[clear])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_success_grows_with_epsilon_and_beats_fgsm(digits_model, digits_batch, norm):
    x, y = digits_batch
    rates = [PGD()(digits_model, x, y, ThreatModel(norm, eps)).success_rate for eps in EPS[norm]]
    assert rates == sorted(rates) and rates[0] < rates[-1]
    assert PGD()(digits_model, x, y, ThreatModel(norm, LARGE[norm])).success_rate == 1.0
    threat = ThreatModel(norm, MODERATE[norm])
    pgd, fgsm = PGD()(digits_model, x, y, threat), FGSM()(digits_model, x, y, threat)
    assert pgd.success_rate >= fgsm.success_rate
    assert bool(threat.contains(x, pgd.x_adv).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_only_add_successes(digits_model, digits_batch, norm):
    x, y = digits_batch
    threat = ThreatModel(norm, MODERATE[norm])
    one = PGD(steps=10)(digits_model, x, y, threat, seed=3)
    three = PGD(steps=10, restarts=3)(digits_model, x, y, threat, seed=3)
    assert not bool((one.success & ~three.success).any())
    assert three.gradient_evals <= 3 * 10 * x.shape[0]
    # Restarts re-run only the samples the first run left unbroken.
    assert three.gradient_evals - one.gradient_evals <= 2 * 10 * int((~one.success).sum())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_pgd_reaches_the_targets(digits_model, digits_batch, norm):
    x, y = digits_batch
    targets = (y + 3) % 10
    result = PGD()(digits_model, x, y, ThreatModel(norm, LARGE[norm]), targets=targets)
    assert torch.equal(result.success, result.predictions == targets)
    assert result.success_rate >= 0.9


def test_default_step_size_is_madry_rule(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", 0.1)
    default = PGD(steps=10)(digits_model, x, y, threat, seed=1)
    explicit = PGD(steps=10, step_size=2.5 * 0.1 / 10)(digits_model, x, y, threat, seed=1)
    other = PGD(steps=10, step_size=0.1 / 10)(digits_model, x, y, threat, seed=1)
    assert torch.equal(default.x_adv, explicit.x_adv)
    assert not torch.equal(default.x_adv, other.x_adv)


def test_gradient_evals_stay_within_steps_per_sample(digits_model, digits_batch):
    x, y = digits_batch
    small = PGD()(digits_model, x, y, ThreatModel("linf", 0.01))
    assert small.gradient_evals <= 40 * x.shape[0]
    # Fooled samples leave the working batch, so a large budget costs far fewer evaluations.
    large = PGD()(digits_model, x, y, ThreatModel("linf", LARGE["linf"]))
    assert large.success_rate == 1.0 and large.gradient_evals < 20 * x.shape[0]


class _NoisyInput(nn.Module):
    """Adds gaussian noise to the input on every forward pass (a randomised defense)."""

    def __init__(self, inner: nn.Module, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma
        self.noise = torch.Generator().manual_seed(123)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.noise, dtype=x.dtype)
        return self.inner(x + self.sigma * noise)


def test_eot_multiplies_gradient_evals_and_still_works(digits_mlp_module, digits_model, digits_batch):
    x, y = digits_batch
    with torch.no_grad():
        top2 = digits_model(x).topk(2, dim=1).values
    # Keep confidently classified inputs: the noise alone never flips them, so every sample runs every step.
    confident = (top2[:, 0] - top2[:, 1]) > 5
    x, y = x[confident], y[confident]
    n = x.shape[0]
    assert n >= 10
    model = TorchClassifier(_NoisyInput(digits_mlp_module, 0.05), num_classes=10)
    tiny = ThreatModel("linf", 1e-3)
    one = PGD(steps=5)(model, x, y, tiny)
    eight = PGD(steps=5, eot_samples=8)(model, x, y, tiny)
    assert one.gradient_evals == 5 * n
    assert eight.gradient_evals == 8 * one.gradient_evals
    # the noisy model also scores the result, so one seed's rate swings by +-8 points over ~26 inputs:
    # average three seeds (each seed's draws are per example, as in every attack)
    rates = [
        PGD(steps=20, eot_samples=8)(model, x, y, ThreatModel("linf", 0.3), seed=s).success_rate
        for s in range(3)
    ]
    assert sum(rates) / 3 >= 0.8, rates


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"steps": 2.5},
        {"step_size": -0.1},
        {"step_size": 0.0},
        {"restarts": 0},
        {"loss": "nope"},
        {"eot_samples": 0},
    ],
)
def test_invalid_hyperparameters_raise(kwargs):
    with pytest.raises(AttackError):
        PGD(**kwargs)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_an_unbounded_attacker_breaks_every_input(digits_model, digits_batch, norm):
    # Sanity check from Carlini et al. 2019: with only the bounds as constraint, PGD must always succeed.
    x, y = digits_batch
    result = PGD(steps=20)(digits_model, x, y, ThreatModel(norm, math.inf))
    assert result.success_rate == 1.0
