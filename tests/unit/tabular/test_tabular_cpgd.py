"""CPGD: the LP known answer on a linear model, constraint invariants, the base class's re-check,
and an end-to-end run on German Credit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _tabular_lp import MIXED, attack_mixed, lp_case, mixed_data
from torch import nn

from bastion.errors import ThreatModelError
from bastion.tabular import (
    CPGD,
    Encoder,
    Feature,
    Relation,
    TabularAttack,
    TabularData,
    TabularSchema,
    TabularThreatModel,
    TorchTabularClassifier,
    load_tabular,
    train_mlp,
)
from bastion.tabular.attacks import base as attack_base

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tabular"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="tabular data not present in ../shared/data")


@pytest.mark.parametrize("budget", [None, 0.12])
def test_cpgd_flips_exactly_what_the_lp_says(budget: float | None) -> None:
    model, threat, x, y, margins = lp_case(budget)  # every record starts correctly classified
    clear = np.abs(margins) > 1e-3  # leave out records the LP puts on the boundary
    flippable = margins < 0
    assert (flippable & clear).sum() > 20 and (~flippable & clear).sum() > 20
    result = CPGD(steps=20)(model, x, y, threat, seed=0)
    got = result.success.numpy()
    assert (got[clear] == flippable[clear]).all(), (
        f"LP flippable {int((flippable & clear).sum())}, CPGD found {int((got & clear & flippable).sum())}, "
        f"false successes {int((got & clear & ~flippable).sum())}"
    )
    assert result.valid.all() and result.constraint_satisfaction == 1.0
    assert torch.equal(result.x_adv[:, 3], x[:, 3])
    assert result.gradient_evals > 0 and result.queries >= 300


def test_cpgd_finds_the_best_category_switch_on_a_linear_model() -> None:
    schema = TabularSchema(
        features=(
            Feature("f", "numeric", low=0, high=10, immutable=True),
            Feature("c", "categorical", categories=("a", "b", "c", "d")),
        ),
        classes=("0", "1"),
    )
    v = torch.tensor([0.0, 2.0, -1.5, 1.0])  # logit 1 - logit 0 = 0.5 f + v[c] - 3
    enc = Encoder(schema, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    layer = nn.Linear(5, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.zeros(5), torch.cat([torch.tensor([0.5]), v])]))
        layer.bias.copy_(torch.tensor([0.0, -3.0]))
    model = TorchTabularClassifier(layer, enc)
    g = torch.Generator().manual_seed(0)
    x = torch.stack([10 * torch.rand(200, generator=g), torch.randint(0, 4, (200,), generator=g)], 1).double()
    y = model(x).argmax(dim=1)
    base = 0.5 * x[:, 0] - 3
    reach = torch.where(y == 1, base + v.min(), base + v.max())  # the best switch's margin
    flippable = torch.where(y == 1, reach < 0, reach >= 0)
    clear = (reach.abs() > 1e-3).numpy()
    result = CPGD(steps=10)(model, x, y, TabularThreatModel(schema), seed=0)
    assert flippable[clear].any() and (~flippable[clear]).any()
    assert (result.success.numpy()[clear] == flippable.numpy()[clear]).all()
    none = CPGD(steps=10)(model, x, y, TabularThreatModel(schema, budget=0.5), seed=0)
    assert not none.success.any() and torch.equal(none.x_adv, x)  # a switch costs 1 > 0.5


def test_unbounded_feature_and_inequality_relation() -> None:
    schema = TabularSchema(
        features=(Feature("a", "numeric"), Feature("b", "numeric", low=0, high=5)),
        classes=("0", "1"),
        relations=(Relation({"a": 1, "b": 1}, "<=", 6.0),),
    )
    data = TabularData(
        torch.tensor([[1.0, 1.0], [2.0, 3.0], [0.0, 0.5]] * 10, dtype=torch.float64),
        torch.tensor([0, 1, 0] * 10),
        schema,
        ("0", "1"),
    )
    model = train_mlp(data, hidden=(8,), epochs=30, seed=0, lr=0.05)
    result = CPGD(steps=10, unbounded_std=2.0)(model, data.x, data.y, TabularThreatModel(schema), seed=0)
    assert result.valid.all()
    assert (result.x_adv.sum(dim=1) <= 6.0 + 1e-9).all()
    assert ((result.x_adv[:, 0] - data.x[:, 0]).abs() <= 2.0 * float(model.encoder.std[0]) + 1e-9).all()


# -- invariants on the mixed schema (relations, budget, directions) --------------------------------
@pytest.fixture(scope="module")
def mixed_model() -> TorchTabularClassifier:
    return train_mlp(mixed_data(), hidden=(32,), epochs=40, seed=0, lr=0.01)


@pytest.mark.parametrize("budget", [None, 0.4])
def test_every_returned_record_satisfies_the_constraints(
    mixed_model: TorchTabularClassifier, budget: float | None
) -> None:
    x, y, result = attack_mixed(CPGD(steps=15, restarts=2), mixed_model, 150, budget)
    xa = result.x_adv
    attacked = mixed_model(x).argmax(dim=1) == y
    with torch.no_grad():  # a record not flipped still comes back at a loss no lower than the original's
        ce = torch.nn.functional.cross_entropy
        assert (
            ce(mixed_model(xa), y, reduction="none") >= ce(mixed_model(x), y, reduction="none") - 1e-5
        ).all()
    assert int((result.success & attacked).sum()) > 0, "the attack should flip some records"
    again = CPGD(steps=15, restarts=2)(mixed_model, x, y, TabularThreatModel(MIXED, budget=budget), seed=0)
    assert torch.equal(again.x_adv, result.x_adv)
    i = int((result.success & attacked).nonzero()[0])
    assert result.show(i).startswith(f"#{i} success") and "->" in result.show(i)
    summary = json.loads(json.dumps(result.summary()))
    assert summary["constraint_satisfaction"] == 1.0 and summary["robust_accuracy"] == result.robust_accuracy


class _Cheater(TabularAttack):
    """Returns records that break the immutable feature and every range."""

    name = "cheater"

    def _run(self, model, x, y, threat, *, generator):  # type: ignore[no-untyped-def]
        return x * 0 + 1e6


def test_base_class_rechecks_instead_of_trusting_the_repair(
    mixed_model: TorchTabularClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = mixed_data()
    threat = TabularThreatModel(MIXED)
    monkeypatch.setattr(attack_base, "repair", lambda x_adv, x, threat: x_adv)  # a broken repair
    result = _Cheater()(mixed_model, data.x[:50], data.y[:50], threat)
    attacked = result.changed.any(dim=1)
    assert attacked.any() and not result.valid[attacked].any()
    assert not result.success[attacked].any(), "an invalid record must never count as a success"


def test_threat_schema_must_match_the_model_columns(mixed_model: TorchTabularClassifier) -> None:
    data = mixed_data(20)
    freed = TabularThreatModel(MIXED.updated("age", immutable=False))  # same columns, new mutability
    result = CPGD(steps=3)(mixed_model, data.x, data.y, freed)
    assert result.valid.all()
    other = MIXED.updated("housing", categories=("own", "rent", "boat"))
    with pytest.raises(ThreatModelError, match="differ in feature names, kinds or categories"):
        CPGD(steps=3)(mixed_model, data.x, data.y, TabularThreatModel(other))


@needs_shared
def test_german_credit_end_to_end() -> None:
    schema = TabularSchema.from_json(SHARED / "tabular_schema.json", dataset="german_credit.csv.gz")
    data = load_tabular(SHARED / "german_credit.csv.gz", schema)
    train, test = data.split(0.2, seed=0)
    model = train_mlp(train, epochs=20, seed=0)
    clean = float((model(test.x).argmax(dim=1) == test.y).float().mean())
    assert clean > 0.65
    threat = TabularThreatModel(schema, max_change={"credit_amount": 2000, "duration_months": 12}, budget=1.0)
    result = CPGD(steps=20)(model, test.x, test.y, threat, seed=0)
    assert result.constraint_satisfaction == 1.0
    assert result.robust_accuracy < clean - 0.1
    immutable = [schema.index(f.name) for f in schema.features if f.immutable]
    assert torch.equal(result.x_adv[:, immutable], test.x[:, immutable])
    changed = [n for i in range(len(result)) for n, _, _ in result.changes(i)]
    assert changed and not {"age", "personal_status_sex", "foreign_worker"} & set(changed)
