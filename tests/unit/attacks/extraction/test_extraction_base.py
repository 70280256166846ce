"""The extraction-attack contract: ``run`` is the base class's alone; it holds the subclass to the
budget, reports the queries spent, builds the curve from the queries in the order sent, and records
the attack's parameters with what the subclass measured."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from bastion.attacks.extraction import CloneTraining, ExtractionAttack, JacobianAugmentation, KnockoffNets
from bastion.attacks.extraction._oracle import Oracle
from bastion.attacks.extraction.base import Progress, Queried
from bastion.errors import DataError, QueryBudgetError

TINY = CloneTraining(steps=20, min_epochs=1, batch_size=32, lr=5e-3)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))


class FirstRows(ExtractionAttack):
    """Sends the pool's first ``spend`` rows (or ``budget`` if None) in one request."""

    name = "first-rows"

    def __init__(self, spend: int | None = None) -> None:
        self.output, self.budgets, self.training = "probs", (5,), TINY
        self.query_batch, self._clone, self.spend = 4, mlp, spend

    def _query(
        self,
        oracle: Oracle,
        pool: Any,
        x_pool: torch.Tensor,
        generator: torch.Generator,
        seed: int,
        progress: Progress | None,
    ) -> Queried:
        n = oracle.budget if self.spend is None else self.spend
        return Queried(x_pool[:n], oracle.released(x_pool[:n]), {"sent": n})


def test_no_attack_overrides_run():
    for cls in (KnockoffNets, JacobianAugmentation):
        assert issubclass(cls, ExtractionAttack) and cls.run is ExtractionAttack.run


def test_run_builds_the_curve_and_reports(digits_linear_victim):
    from bastion.data import load_dataset

    train = load_dataset("digits", split="train")
    calls: list[tuple[str, int, int]] = []
    r = FirstRows().run(digits_linear_victim, train, 12, seed=1, progress=lambda *a: calls.append(a))
    assert r.queries == 12 and [p.budget for p in r.curve] == [5, 12]
    assert r.info["attack"] == "first-rows" and r.info["pool"] == train.name
    assert r.params["sent"] == 12 and r.params["budgets"] == [5] and r.params["spend"] is None
    assert r.params["training"] == TINY.to_dict() and "_clone" not in r.params
    assert calls == [("queries", 12, 12), ("clones", 1, 2), ("clones", 2, 2)]


def test_the_budget_binds_the_subclass(digits_linear_victim):
    from bastion.data import load_dataset

    train = load_dataset("digits", split="train")
    with pytest.raises(QueryBudgetError, match="budget of 10"):
        FirstRows(spend=11).run(digits_linear_victim, train, 10)


def test_pool_and_budget_are_checked(digits_linear_victim):
    from bastion.errors import AttackError

    with pytest.raises(DataError, match="outside the victim's bounds"):
        FirstRows().run(digits_linear_victim, torch.full((20, 1, 8, 8), 5.0), 10)
    with pytest.raises(AttackError, match="pool must be"):
        FirstRows().run(digits_linear_victim, [1, 2, 3], 10)
    with pytest.raises(AttackError, match="budget must be an integer > 0"):
        FirstRows().run(digits_linear_victim, torch.zeros(20, 1, 8, 8), 0)


def test_knockoff_names_its_strategy() -> None:
    attacks: list[Any] = [KnockoffNets("adaptive"), JacobianAugmentation()]
    assert [a.attack_name for a in attacks] == ["knockoff-adaptive", "jacobian"]
