"""MoEvA (constrained genetic search): the LP known answer on a linear model, constraint invariants on
a black-box model, seeded determinism and exact query counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tabular_lp import LIN, MIXED, attack_mixed, linear_model, lp_case, mixed_data
from sklearn.ensemble import HistGradientBoostingClassifier

from bastion.errors import AttackError, ModelContractError
from bastion.tabular import CPGD, MoEvA, SklearnTabularClassifier, TabularThreatModel
from bastion.tabular.attacks import moeva as moeva_module


@pytest.mark.parametrize("budget", [None, 0.12])
def test_moeva_flips_what_the_lp_says_is_flippable(budget: float | None) -> None:
    model, threat, x, y, margins = lp_case(budget)
    clear = np.abs(margins) > 1e-2
    flippable = margins < 0
    assert (flippable & clear).sum() > 20 and (~flippable & clear).sum() > 200
    result = MoEvA(population=32, generations=40)(model, x, y, threat, seed=0)
    got = result.success.numpy()
    assert not (got & ~flippable).any(), "a success the LP says is impossible"
    assert (got[clear] == flippable[clear]).all(), (
        f"LP flippable {int((flippable & clear).sum())}, found {int((got & clear & flippable).sum())}"
    )
    assert result.valid.all() and result.gradient_evals == 0
    assert torch.equal(result.x_adv[:, 3], x[:, 3])


# -- a black-box model on the mixed schema: relations, budget, directions, categories --------------
@pytest.fixture(scope="module")
def boosted() -> SklearnTabularClassifier:
    data = mixed_data()
    est = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(data.x.numpy(), data.y.numpy())
    return SklearnTabularClassifier(est, MIXED)


@pytest.mark.parametrize("budget", [None, 0.4])
def test_every_record_is_valid_and_successes_are_real(
    boosted: SklearnTabularClassifier, budget: float | None
) -> None:
    x, y, result = attack_mixed(MoEvA(population=16, generations=15), boosted, 120, budget)
    attacked = boosted(x).argmax(dim=1) == y
    assert int((result.success & attacked).sum()) > 5, "the search should flip some records"


def test_a_broken_repair_inside_the_search_cannot_produce_an_invalid_success(
    boosted: SklearnTabularClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = mixed_data()
    monkeypatch.setattr(moeva_module, "repair", lambda x_adv, x, threat: x_adv + 1e4)
    result = MoEvA(population=8, generations=3)(boosted, data.x[:60], data.y[:60], TabularThreatModel(MIXED))
    assert result.valid.all()
    assert torch.equal(result.success, boosted(result.x_adv).argmax(dim=1) != data.y[:60])


def test_same_seed_same_records(boosted: SklearnTabularClassifier) -> None:
    data = mixed_data()
    threat = TabularThreatModel(MIXED, budget=0.4)
    attack = MoEvA(population=12, generations=8)
    a = attack(boosted, data.x[:80], data.y[:80], threat, seed=3)
    b = attack(boosted, data.x[:80], data.y[:80], threat, seed=3)
    assert torch.equal(a.x_adv, b.x_adv) and a.queries == b.queries
    # a caller's own generator is shared by the batch, and reproducible too
    c, d = (attack(boosted, data.x[:80], data.y[:80], threat, generator=torch.Generator().manual_seed(3))
            for _ in range(2))  # fmt: skip
    assert torch.equal(c.x_adv, d.x_adv)


def test_a_record_draws_by_its_id_not_its_batch(boosted: SklearnTabularClassifier) -> None:
    """Records 20..59 attacked alone under their ids get exactly their rows of the 80-record run; under
    other ids they get other draws (so the ids are what keys them)."""
    data = mixed_data()
    threat = TabularThreatModel(MIXED, budget=0.4)
    spread = data.x[:80].std(dim=0, unbiased=False).tolist()  # no encoder: the spread must be the whole's
    attack = MoEvA(population=12, generations=8, feature_scale=spread)
    whole = attack(boosted, data.x[:80], data.y[:80], threat, seed=3)
    part = attack(boosted, data.x[20:60], data.y[20:60], threat, seed=3, example_ids=range(20, 60))
    assert torch.equal(part.x_adv, whole.x_adv[20:60]) and torch.equal(part.success, whole.success[20:60])
    moved = attack(boosted, data.x[20:60], data.y[20:60], threat, seed=3)
    assert not torch.equal(moved.x_adv, whole.x_adv[20:60])


class Recording:
    """A tabular classifier that logs the size of every batch it is asked about."""

    differentiable = False

    def __init__(self, model: SklearnTabularClassifier) -> None:
        self.model, self.schema, self.calls = model, model.schema, []  # type: ignore[var-annotated]

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        return self.model(x)


def test_queries_are_counted_exactly_one_call_per_generation(boosted: SklearnTabularClassifier) -> None:
    data = mixed_data()
    x, y = data.x[:50], data.y[:50]
    model = Recording(boosted)
    pop, gens = 10, 6
    result = MoEvA(population=pop, generations=gens)(model, x, y, TabularThreatModel(MIXED), seed=0)
    calls = model.calls
    # the base's own first check (counted), 1 + up to `gens` generations, the base's final check (not)
    assert calls[0] == 50 and calls[-1] == 50
    search = calls[1:-1]
    assert 2 <= len(search) <= 1 + gens
    assert all(c % pop == 0 for c in search) and search == sorted(search, reverse=True)
    assert result.queries == sum(calls[:-1])
    attacked = int((boosted(x).argmax(dim=1) == y).sum())
    assert search[0] == attacked * pop


def test_an_unflippable_record_costs_population_times_generations_plus_one() -> None:
    model = linear_model()
    threat = TabularThreatModel(LIN, max_change={"f0": 0.01, "f1": 0.01, "f2": 0.01})
    x = torch.tensor([[9.0, 1.0, 9.0, 9.0]] * 3, dtype=torch.float64)  # deep inside class 1
    y = model(x).argmax(dim=1)
    result = MoEvA(population=7, generations=5)(model, x, y, threat, seed=0)
    assert not result.success.any() and result.queries == 3 + 3 * 7 * (5 + 1)


def test_errors_and_access(boosted: SklearnTabularClassifier) -> None:
    with pytest.raises(AttackError, match="population must be >= 2"):
        MoEvA(population=1)
    with pytest.raises(AttackError, match="mutation"):
        MoEvA(mutation=1.5)
    data = mixed_data(20)
    with pytest.raises(ModelContractError, match="gradient-free"):
        CPGD(steps=2)(boosted, data.x, data.y, TabularThreatModel(MIXED))
    assert MoEvA.access == "scores"


def test_lightgbm_through_the_sklearn_api_when_installed() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    data = mixed_data()
    est = lightgbm.LGBMClassifier(n_estimators=40, random_state=0, n_jobs=1, verbose=-1)
    model = SklearnTabularClassifier(est.fit(data.x.numpy(), data.y.numpy()), MIXED)
    threat = TabularThreatModel(MIXED, budget=0.4)
    result = MoEvA(population=16, generations=10)(model, data.x[:80], data.y[:80], threat, seed=0)
    assert result.valid.all() and int((result.success & result.changed.any(dim=1)).sum()) > 0
    assert torch.equal(result.success, model(result.x_adv).argmax(dim=1) != data.y[:80])
