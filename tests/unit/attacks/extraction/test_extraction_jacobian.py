"""Jacobian-based dataset augmentation (Papernot et al. 2017) on the digits: budget accounting, the
augmented points' construction, the reservoir variant and label-only victims."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.extraction import CloneTraining, JacobianAugmentation
from bastion.attacks.extraction.jacobian import _jacobian_step
from bastion.blackbox import QueryCounter
from bastion.data import load_dataset
from bastion.defenses.output_policy import PolicyClassifier
from bastion.errors import AttackError
from bastion.model import TorchClassifier


def mlp() -> nn.Module:
    """A clone cheap enough for unit tests on the 8x8 digits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


FAST = CloneTraining(steps=200, min_epochs=3, batch_size=32, lr=5e-3)


@pytest.fixture(scope="module")
def setting(digits_linear_victim):
    """The shared linear digits victim (tests/conftest.py) and the digits train/test splits."""
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    return digits_linear_victim, train, test


def test_spends_exactly_the_budget_growing_from_the_seed_set(setting):
    victim, train, test = setting
    counted = QueryCounter(PolicyClassifier(victim, "labels"))
    atk = JacobianAugmentation(seed_size=20, budgets=(20, 100), training=FAST, clone=mlp)
    result = atk.run(counted, train, 130, test=test, reference=victim, seed=0)
    # 20 seeds, then 20, 40, 50 (cut to fit): 130 queries in 3 rounds.
    assert counted.queries == result.queries == 130 and result.params["rounds"] == 3
    assert [p.budget for p in result.curve] == [20, 100, 130]
    assert result.fidelity is not None and result.fidelity > 0.5


def test_reservoir_grows_by_kappa_per_round(setting):
    victim, train, _ = setting
    atk = JacobianAugmentation(seed_size=20, reservoir=15, budgets=(), training=FAST, clone=mlp)
    result = atk.run(victim, train, 80, seed=0)
    assert result.queries == 80 and result.params["rounds"] == 4  # 20 + 15 + 15 + 15 + 15


def test_step_follows_the_sign_of_the_substitutes_gradient():
    """On a linear substitute the gradient of logit c is the weight row c: x + lam * sign(W[c])."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    sub = TorchClassifier(net, num_classes=3)
    x = torch.full((2, 1, 2, 2), 0.5)
    labels = torch.tensor([0, 2])
    new = _jacobian_step(sub, x, labels, 0.1, 0.0, 1.0)
    w = net[1].weight.detach()
    expected = (0.5 + 0.1 * w[labels].sign()).view(2, 1, 2, 2)
    assert torch.allclose(new, expected) and torch.equal(x, torch.full((2, 1, 2, 2), 0.5))
    assert float(_jacobian_step(sub, x, labels, 1.0, 0.0, 1.0).max()) <= 1.0  # clipped to the bounds


def test_same_seed_same_substitute(setting):
    victim, train, _ = setting
    atk = JacobianAugmentation(seed_size=20, budgets=(), training=FAST, clone=mlp)
    a, b = (atk.run(victim, train, 50, seed=2) for _ in range(2))
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_configuration_is_refused():
    with pytest.raises(AttackError, match="output"):
        JacobianAugmentation(output="top3")
    with pytest.raises(AttackError, match="step_size"):
        JacobianAugmentation(step_size=0)
