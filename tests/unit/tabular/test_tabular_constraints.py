"""The threat model's constraints: each kind violated on purpose is caught; repair always satisfies."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.errors import ThreatModelError
from bastion.tabular import (
    CONSTRAINTS,
    Feature,
    Relation,
    TabularSchema,
    TabularThreatModel,
    repair,
    satisfied,
    violations,
)

SCHEMA = TabularSchema(
    features=(
        Feature("age", "integer", low=18, high=90, immutable=True),  # 0
        Feature("income", "numeric", low=0, high=1000, max_change=100.0),  # 1
        Feature("debt", "integer", low=0, high=1000, cost=2.0),  # 2
        Feature("total", "numeric", low=0, high=2000),  # 3
        Feature("rate", "ordinal", categories=("1", "2", "3", "4"), direction="decrease"),  # 4
        Feature("housing", "categorical", categories=("own", "rent", "free")),  # 5
        Feature("score", "numeric", low=0, high=10, direction="increase"),  # 6
    ),
    relations=(
        Relation({"income": 1, "debt": 1, "total": -1}, "==", 0.0, adjust="total"),
        Relation({"debt": 1, "income": -1}, "<=", 500.0),
    ),
)
THREAT = TabularThreatModel(SCHEMA, budget=1.0)
X = torch.tensor([[40, 300, 200, 500, 2, 0, 5.0], [25, 100, 50, 150, 3, 2, 1.0]], dtype=torch.float64)


def broken(column: int, value: float, row: int = 0) -> torch.Tensor:
    x = X.clone()
    x[row, column] = value
    return x


@pytest.mark.parametrize(
    ("x_adv", "kind"),
    [
        (broken(0, 41), "immutable"),
        (broken(1, 450), "max_change"),  # +150 > 100
        (broken(4, 3), "direction"),  # rate may only decrease
        (broken(6, 4.0), "direction"),  # score may only increase
        (broken(6, 11.0), "range"),
        (broken(2, 200.5), "integrality"),
        (broken(5, 3), "category"),
        (broken(4, 1.5), "category"),
        (broken(3, 600), "relation"),  # total != income + debt
        (broken(1, float("nan")), "finite"),
    ],
)
def test_each_violation_is_caught_by_its_own_check(x_adv: torch.Tensor, kind: str) -> None:
    v = violations(x_adv, X, THREAT)
    assert set(v) == set(CONSTRAINTS)
    assert bool(v[kind][0]), f"{kind} not caught"
    assert not bool(v[kind][1])
    assert satisfied(x_adv, X, THREAT).tolist() == [False, True]


def test_budget_and_inequality_relation() -> None:
    x_adv = X.clone()
    x_adv[0, 2], x_adv[0, 3] = (
        900,
        1200,
    )  # debt +700 at cost 2/1000 per unit = 1.4 > 1.0; debt-income 600 > 500
    v = violations(x_adv, X, THREAT)
    assert bool(v["budget"][0]) and bool(v["relation"][0])
    assert float(THREAT.cost(X, x_adv)[0]) == pytest.approx(1.4 + 700 / 2000)


def test_originals_satisfy_and_categorical_change_costs_its_weight() -> None:
    assert satisfied(X, X, THREAT).all()
    x_adv = broken(5, 1)
    assert float(THREAT.cost(X, x_adv)[0]) == pytest.approx(1.0)
    assert satisfied(x_adv, X, THREAT)[0]
    assert not satisfied(x_adv, X, TabularThreatModel(SCHEMA, budget=0.5))[0]


def test_record_outside_the_range_may_stay_there() -> None:
    x = broken(6, 12.0)  # an original above the declared high
    assert satisfied(x, x, THREAT).all()
    assert not satisfied(broken(6, 12.5), x, THREAT)[0]


@pytest.mark.parametrize("budget", [None, 0.05, 0.5, 3.0])
def test_repair_output_always_satisfies(budget: float | None) -> None:
    threat = TabularThreatModel(SCHEMA, budget=budget)
    gen = torch.Generator().manual_seed(0)
    x = X.repeat(200, 1)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64) * torch.tensor(
        [5, 300, 300, 300, 2, 2, 5], dtype=torch.float64
    )
    x_adv = x + noise
    x_adv[::7, 1] = float("inf")
    out = repair(x_adv, x, threat)
    assert satisfied(out, x, threat).all()
    assert torch.equal(out[:, 0], x[:, 0])  # immutable restored
    assert (out[:, 5] - out[:, 5].round()).abs().max() == 0
    moved = (out != x).any(dim=1)
    assert int(moved.sum()) > 20, "repair should keep many candidates, not revert everything"
    assert torch.equal(x, X.repeat(200, 1)), "repair must not mutate its inputs"


def test_repair_restores_the_equality_through_its_adjust_feature() -> None:
    x_adv = X.clone()
    x_adv[0, 1] = 350.0  # income +50: total must follow to 550
    out = repair(x_adv, X, TabularThreatModel(SCHEMA))
    assert out[0, 1] == 350.0 and out[0, 3] == 550.0


def test_repair_pays_for_the_adjusted_feature_out_of_the_budget() -> None:
    x_adv = X.clone()
    x_adv[0, 1] = 400.0  # income +100 (cost 0.1) drags total +100 (cost 0.05): 0.15 > 0.1
    threat = TabularThreatModel(SCHEMA, budget=0.1)
    out = repair(x_adv, X, threat)
    assert satisfied(out, X, threat).all()
    assert float(out[0, 1]) == pytest.approx(300 + 200 / 3) and float(out[0, 3]) == pytest.approx(
        500 + 200 / 3
    )


def test_repair_reverts_when_the_relation_cannot_be_restored() -> None:
    frozen_total = TabularThreatModel(SCHEMA, mutable=("income", "debt"))
    x_adv = X.clone()
    x_adv[0, 1] = 350.0
    out = repair(x_adv, X, frozen_total)
    assert satisfied(out, X, frozen_total).all()
    assert torch.equal(out[0], X[0])


def test_threat_model_validation() -> None:
    with pytest.raises(ThreatModelError, match="immutable in the schema"):
        TabularThreatModel(SCHEMA, mutable=("age",))
    with pytest.raises(ThreatModelError, match="not a feature"):
        TabularThreatModel(SCHEMA, max_change={"nope": 1.0})
    unbounded = TabularSchema((Feature("a", "numeric"),))
    with pytest.raises(ThreatModelError, match="has no range"):
        TabularThreatModel(unbounded, budget=1.0)
    assert TabularThreatModel(unbounded).max_change_vector()[0] == math.inf
    frozen = TabularThreatModel(SCHEMA, max_change={"housing": 0.5})
    assert not bool(frozen.movable()[5])


def test_small_changes_on_large_values_are_still_caught() -> None:
    schema = TabularSchema(
        features=(
            Feature("bill", "integer", low=-1e6, high=2e6, immutable=True),
            Feature("paid", "integer", low=0, high=2e6),
            Feature("left", "integer", low=-2e6, high=2e6),
        ),
        relations=(Relation({"bill": 1, "paid": -1, "left": -1}, "==", 0.0),),
    )
    threat = TabularThreatModel(schema)
    x = torch.tensor([[1_500_000.0, 400_000.0, 1_100_000.0]], dtype=torch.float64)
    assert satisfied(x, x, threat).all()
    assert violations(x + torch.tensor([[1.0, 0, 1.0]], dtype=torch.float64), x, threat)["immutable"].all()
    assert violations(x + torch.tensor([[0, 1.0, 0]], dtype=torch.float64), x, threat)["relation"].all()
    fixed = repair(x + torch.tensor([[0, 1.0, 0]], dtype=torch.float64), x, threat)
    assert fixed.tolist() == [[1_500_000.0, 400_001.0, 1_099_999.0]]
