"""Threat presets on the shared credit data: what moves and what stays, the money budget, the claim
that no raw relation holds on every record, and the derived total's relation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bastion.errors import ThreatModelError
from bastion.tabular import (
    CPGD,
    THREAT_PRESETS,
    Feature,
    TabularSchema,
    TabularThreatModel,
    load_tabular,
    repair,
    satisfied,
    threat_preset,
    train_mlp,
    with_payment_total,
)

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tabular"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="tabular data not present in ../shared/data")


def _schema(dataset: str) -> TabularSchema:
    return TabularSchema.from_json(SHARED / "tabular_schema.json", dataset=dataset)


def test_unknown_preset_lists_the_known_ones() -> None:
    assert set(THREAT_PRESETS) == {"german_credit", "default_credit_taiwan"}
    with pytest.raises(ThreatModelError, match="presets: default_credit_taiwan, german_credit"):
        threat_preset("adult", TabularSchema(features=(Feature("a", "numeric"),)))


@needs_shared
def test_german_preset_moves_only_what_an_applicant_controls() -> None:
    schema = _schema("german_credit.csv.gz")
    threat = threat_preset("german_credit.csv.gz", schema)
    movable = {n for n, ok in zip(schema.names, threat.movable().tolist(), strict=True) if ok}
    assert movable == {
        "credit_amount", "duration_months", "installment_rate", "purpose", "savings",
        "checking_status", "other_debtors", "telephone",
    }  # fmt: skip
    hinted = {f.name for f in schema.features if f.immutable}
    assert hinted == {"age", "personal_status_sex", "foreign_worker"} and not hinted & movable
    assert json.loads(json.dumps(threat.to_dict()))["budget"] == 1.0
    data = load_tabular(SHARED / "german_credit.csv.gz", schema)
    _, test = data.split(0.2, seed=0)
    assert bool(satisfied(test.x, test.x, threat).all())
    model = train_mlp(data.split(0.2, seed=0)[0], epochs=5, seed=0)
    result = CPGD(steps=10)(model, test.x[:100], test.y[:100], threat, seed=0)
    assert result.constraint_satisfaction == 1.0 and (result.cost <= 1.0 + 1e-9).all()
    changed = {n for i in range(len(result)) for n, _, _ in result.changes(i)}
    assert changed and changed <= movable
    amount = schema.index("credit_amount")
    assert ((result.x_adv[:, amount] - test.x[:100, amount]).abs() <= 2000).all()


@needs_shared
def test_taiwan_has_no_relation_on_every_record_but_the_derived_total_does() -> None:
    schema = _schema("default_credit_taiwan.csv.gz").without("ID")
    data = load_tabular(SHARED / "default_credit_taiwan.csv.gz", schema, ignore=["ID"])
    x = data.x
    bill = [x[:, schema.index(f"BILL_AMT{i}")] for i in range(1, 7)]
    pay = [x[:, schema.index(f"PAY_AMT{i}")] for i in range(1, 7)]
    for t in range(5):  # the accounting identity holds on ~99.6% of records, not all: not a relation
        holds = (bill[t] >= bill[t + 1] - pay[t]).double().mean()
        assert 0.99 < float(holds) < 1.0
    total = with_payment_total(data)
    assert total.schema.names[-1] == "PAY_AMT_TOTAL" and len(total.schema.relations) == 1
    threat = threat_preset("default_credit_taiwan", total.schema)
    assert bool(satisfied(total.x, total.x, threat).all())  # the derived relation holds everywhere
    assert threat.relations and "PAY_AMT_TOTAL" in str(threat.to_dict()["mutable"])
    frozen = {"LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "PAY_0", "PAY_2", "PAY_6"}
    movable = {n for n, ok in zip(total.schema.names, threat.movable().tolist(), strict=True) if ok}
    assert not frozen & movable
    # the budget is money: 10,000 NT$ more paid in September costs 10,000 / 60,000 of it
    pay1 = total.schema.index("PAY_AMT1")
    x0 = total.x[total.x[:, pay1] > 0][:1]
    moved = x0.clone()
    moved[0, pay1] += 10_000
    assert float(threat.cost(x0, moved)) == pytest.approx(10_000 / 60_000)
    # paying more must be repaired into a larger total, and paying less is not allowed
    fixed = repair(moved, x0, threat)
    assert float(fixed[0, -1] - x0[0, -1]) == 10_000 and bool(satisfied(fixed, x0, threat).all())
    less = x0.clone()
    less[0, pay1] -= 1
    less[0, -1] -= 1  # relation kept: only the direction is broken
    assert not bool(satisfied(less, x0, threat).all())


@needs_shared
def test_taiwan_preset_works_without_the_total_and_validates_options() -> None:
    schema = _schema("default_credit_taiwan.csv.gz").without("ID")
    threat = threat_preset("default_credit_taiwan", schema)
    assert isinstance(threat, TabularThreatModel) and not threat.schema.relations
    with pytest.raises(ThreatModelError, match="> 0 NT"):
        threat_preset("default_credit_taiwan", schema, money=0.0)
    assert torch.equal(threat.movable(), threat_preset("default_credit_taiwan", schema, budget=0.5).movable())
