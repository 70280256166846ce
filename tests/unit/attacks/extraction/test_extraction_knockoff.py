"""Knockoff Nets and the shared extraction parts on tiny digits models: exact query accounting, the
budget curve's reuse of queries, label-only victims, fidelity known answers, saving and seeding."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bastion.attacks.extraction import (
    CloneTraining,
    KnockoffNets,
    fidelity,
    load_clone,
    small_cnn,
    transfer_rate,
)
from bastion.attacks.extraction._oracle import Oracle
from bastion.data import load_dataset
from bastion.errors import AttackError, DataError, QueryBudgetError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel


def mlp() -> nn.Module:
    """A clone cheap enough for unit tests on the 8x8 digits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


FAST = CloneTraining(steps=200, min_epochs=5, batch_size=32, lr=5e-3)


class Counting:
    """The victim behind a row counter: what the attack sent, and what it saw."""

    def __init__(self, model: TorchClassifier) -> None:
        self.model, self.bounds, self.queries, self.seen = model, model.bounds, 0, []

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += int(x.shape[0])
        out = self.model(x)
        self.seen.append(torch.softmax(out.detach(), 1))
        return out


class LabelOnly(Counting):
    """A top-1-only API: log of a one-hot, so softmax of the output is exactly the released one-hot."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        top = self.model(x).argmax(1)
        out = torch.full((x.shape[0], self.model.num_classes or 10), float("-inf"), device=x.device)
        out[torch.arange(x.shape[0]), top] = 0.0
        self.queries += int(x.shape[0])
        self.seen.append(torch.softmax(out, 1))
        return out


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split="train"), load_dataset("digits", split="test")


@pytest.fixture(scope="module")
def linear_victim(digits_linear_victim):
    """The shared linear digits victim (tests/conftest.py)."""
    return digits_linear_victim


@pytest.mark.parametrize("strategy", ["random", "adaptive"])
def test_queries_are_exactly_the_budget(linear_victim, digits, strategy):
    train, test = digits
    victim = Counting(linear_victim)
    atk = KnockoffNets(strategy, budgets=(50, 120), training=FAST, clone=mlp, round_size=7)
    result = atk.run(victim, train, 200, test=test, reference=linear_victim, seed=0)
    # The curve's checkpoints reuse the 200 queries: 50 + 120 + 200 would be 370.
    assert victim.queries == result.queries == 200
    assert [p.budget for p in result.curve] == [50, 120, 200]
    assert result.evaluation_queries == 0


def test_fidelity_queries_are_counted_apart(linear_victim, digits):
    train, test = digits
    victim = Counting(linear_victim)
    result = KnockoffNets(budgets=(), training=FAST, clone=mlp).run(victim, train, 100, test=test, seed=0)
    assert result.queries == 100 and result.evaluation_queries == len(test)
    assert victim.queries == 100 + len(test)


def test_oracle_refuses_to_exceed_its_budget(linear_victim, digits):
    oracle = Oracle(Counting(linear_victim), budget=10)
    oracle.released(digits[0].x[:6])
    with pytest.raises(QueryBudgetError):
        oracle.released(digits[0].x[:5])
    assert oracle.queries == 6 and oracle.victim.queries == 6


def test_a_clone_equal_to_its_victim_has_full_fidelity(linear_victim, digits):
    x = digits[1].x
    assert fidelity(linear_victim, linear_victim, x) == 1.0
    shuffled = TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), num_classes=10)
    assert fidelity(shuffled, linear_victim, x) < 0.5


def test_probabilities_clone_a_linear_victim(linear_victim, digits):
    train, test = digits
    result = KnockoffNets(budgets=(), training=FAST, clone=mlp).run(
        linear_victim, train, 400, test=test, reference=linear_victim, seed=0
    )
    assert result.fidelity is not None and result.fidelity >= 0.9
    assert result.fidelity == pytest.approx(fidelity(result.classifier, linear_victim, test.x))
    assert result.output == "probs"


def test_label_only_victim(linear_victim, digits):
    train, test = digits
    victim = LabelOnly(linear_victim)
    result = KnockoffNets(output="labels", budgets=(), training=FAST, clone=mlp).run(
        victim, train, 400, test=test, reference=linear_victim, seed=0
    )
    seen = torch.cat(victim.seen)
    assert bool(((seen == 0) | (seen == 1)).all()) and seen.shape[0] == 400  # only one-hots released
    assert result.fidelity is not None and result.fidelity >= 0.85


def test_curve_reuses_the_queries_of_a_smaller_budget(linear_victim, digits):
    """The 200-query run's 100-query point is the clone a 100-query run trains: same first 100 queries."""
    train, test = digits
    kw = {"test": test, "reference": linear_victim, "seed": 3}
    big = KnockoffNets(budgets=(100,), training=FAST, clone=mlp).run(linear_victim, train, 200, **kw)
    small = KnockoffNets(budgets=(), training=FAST, clone=mlp).run(linear_victim, train, 100, **kw)
    assert big.curve[0] == small.curve[0]
    budgets = [p.budget for p in big.curve]
    assert budgets == sorted(budgets) and budgets[-1] == big.queries


def test_same_seed_same_clone(linear_victim, digits):
    train, _ = digits
    atk = KnockoffNets("adaptive", budgets=(), training=FAST, clone=mlp)
    a, b = (atk.run(linear_victim, train, 120, seed=5) for _ in range(2))
    c = atk.run(linear_victim, train, 120, seed=6)
    sa, sb, sc = (r.module.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_saved_clone_reloads_with_its_card(linear_victim, digits, tmp_path):
    train, test = digits
    result = KnockoffNets(output="labels", budgets=(60,), training=FAST, clone=mlp).run(
        linear_victim, train, 150, test=test, reference=linear_victim, seed=1
    )
    weights, card_path = result.save(tmp_path / "clone.safetensors")
    card = json.loads(card_path.read_text())
    assert card["kind"] == "bastion-extraction-clone" and card["attack"] == "knockoff-random"
    assert card["victim"] == "linear" and card["pool"] == train.name and card["output"] == "labels"
    assert card["budget"] == card["queries"] == 150 and card["seed"] == 1
    assert card["fidelity"] == result.fidelity and [p["budget"] for p in card["curve"]] == [60, 150]
    assert card["architecture"] == "mlp" and card["input_shape"] == [1, 8, 8]
    again = load_clone(weights, mlp)
    assert torch.equal(again(test.x).argmax(1), result.classifier(test.x).argmax(1))
    with pytest.raises(AttackError, match="safetensors"):
        result.save(tmp_path / "clone.pt")


def test_transfer_from_the_victim_itself_always_transfers(linear_victim, digits):
    x, y = digits[1].x[:80], digits[1].y[:80]
    threat = ThreatModel("linf", 0.1, bounds=linear_victim.bounds)
    res = transfer_rate(linear_victim, linear_victim, x, y, threat)
    assert res.n > 0 and res.transferred == res.clone_fooled > 0
    assert res.rate == pytest.approx(res.transferred / res.n)


def test_small_cnn_fits_both_image_sizes():
    assert small_cnn((1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert small_cnn((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert small_cnn((20,), 3)(torch.zeros(2, 20)).shape == (2, 3)


def test_bad_configuration_is_refused(linear_victim, digits):
    with pytest.raises(AttackError, match="strategy"):
        KnockoffNets("greedy")
    with pytest.raises(AttackError, match="output"):
        KnockoffNets(output="top3")
    with pytest.raises(DataError, match="outside the victim's bounds"):
        KnockoffNets(training=FAST, clone=mlp).run(linear_victim, digits[1].x * 2, 20)
    with pytest.raises(AttackError, match="pool holds"):
        KnockoffNets(training=FAST, clone=mlp).run(linear_victim, digits[1].x[:10], 20)
