"""MoEvA (constrained genetic search): the LP known answer on a linear model, constraint invariants on
a black-box model, seeded determinism and exact query counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from sklearn.ensemble import HistGradientBoostingClassifier
from torch import nn

from bastion.errors import AttackError, ModelContractError
from bastion.tabular import (
    CPGD,
    Encoder,
    Feature,
    MoEvA,
    Relation,
    SklearnTabularClassifier,
    TabularData,
    TabularSchema,
    TabularThreatModel,
    TorchTabularClassifier,
)
from bastion.tabular.attacks import moeva as moeva_module

# -- known answer: logit(1) - logit(0) = w.x + b on 4 numeric features; the best change is an LP ------
LIN = TabularSchema(
    features=tuple(Feature(f"f{j}", "numeric", low=0, high=10, immutable=(j == 3)) for j in range(4)),
    classes=("0", "1"),
)
W = np.array([1.5, -2.0, 0.7, 3.0])
B = -4.0
MAX_CHANGE = {"f0": 1.0, "f1": 0.5, "f2": 2.0}


def linear_model() -> TorchTabularClassifier:
    enc = Encoder(LIN, torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    layer = nn.Linear(4, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0] * 4, W.tolist()]))
        layer.bias.copy_(torch.tensor([0.0, B]))
    return TorchTabularClassifier(layer, enc)


def best_margin(x: np.ndarray, y: int, threat: TabularThreatModel) -> float:
    """min over allowed changes d of s * (w.(x + d) + b), s = +1 for class 1: negative iff flippable."""
    s = 1.0 if y == 1 else -1.0
    m = [0.0 if f.immutable else MAX_CHANGE[f.name] for f in LIN.features]
    up = [min(10 - x[j], m[j]) for j in range(4)]
    down = [min(x[j], m[j]) for j in range(4)]
    a_ub = b_ub = None
    if threat.budget is not None:  # d = d+ - d-, cost = weights . (d+ + d-)
        wt = threat.cost_weights().numpy()
        a_ub, b_ub = np.concatenate([wt, wt])[None, :], [threat.budget]
    res = linprog(
        np.concatenate([s * W, -s * W]),
        A_ub=a_ub,
        b_ub=b_ub,
        bounds=[(0, u) for u in up] + [(0, d) for d in down],
        method="highs",
    )
    assert res.status == 0
    return float(s * (W @ x + B) + res.fun)


@pytest.mark.parametrize("budget", [None, 0.12])
def test_moeva_flips_what_the_lp_says_is_flippable(budget: float | None) -> None:
    model = linear_model()
    threat = TabularThreatModel(LIN, max_change=MAX_CHANGE, budget=budget)
    x = 1 + 8 * torch.rand(300, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = model(x).argmax(dim=1)
    margins = np.array([best_margin(r, int(c), threat) for r, c in zip(x.numpy(), y.tolist(), strict=True)])
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


# -- a black-box model on a mixed schema: relations, budget, directions, categories ------------------
MIXED = TabularSchema(
    features=(
        Feature("age", "integer", low=18, high=80, immutable=True),
        Feature("income", "integer", low=0, high=5000, max_change=800.0),
        Feature("debt", "integer", low=0, high=5000),
        Feature("total", "integer", low=0, high=10000),
        Feature("rate", "ordinal", categories=("1", "2", "3", "4"), direction="decrease"),
        Feature("housing", "categorical", categories=("own", "rent", "free"), cost=0.3),
        Feature("ratio", "numeric", low=0, high=1, direction="increase"),
    ),
    classes=("0", "1"),
    relations=(Relation({"income": 1, "debt": 1, "total": -1}, "==", 0.0, adjust="total"),),
)


def mixed_data(n: int = 400) -> TabularData:
    g = torch.Generator().manual_seed(1)

    def ints(lo: int, hi: int) -> torch.Tensor:
        return torch.randint(lo, hi, (n,), generator=g).double()

    income, debt = ints(0, 5000), ints(0, 5000)
    ratio = torch.rand(n, generator=g).double()
    x = torch.stack([ints(18, 80), income, debt, income + debt, ints(0, 4), ints(0, 3), ratio], dim=1)
    y = ((debt - income) / 2000 + x[:, 4] / 3 - (x[:, 5] == 0).double() + x[:, 6] > 0.3).long()
    return TabularData(x, y, MIXED, ("0", "1"))


@pytest.fixture(scope="module")
def boosted() -> SklearnTabularClassifier:
    data = mixed_data()
    est = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(data.x.numpy(), data.y.numpy())
    return SklearnTabularClassifier(est, MIXED)


@pytest.mark.parametrize("budget", [None, 0.4])
def test_every_record_is_valid_and_successes_are_real(
    boosted: SklearnTabularClassifier, budget: float | None
) -> None:
    data = mixed_data()
    x, y = data.x[:120], data.y[:120]
    before = x.clone()
    threat = TabularThreatModel(MIXED, budget=budget)
    result = MoEvA(population=16, generations=15)(boosted, x, y, threat, seed=0)
    assert torch.equal(x, before)
    assert result.valid.all() and result.constraint_satisfaction == 1.0
    xa = result.x_adv
    assert torch.equal(xa[:, 0], x[:, 0]) and torch.equal(xa[:, :6], xa[:, :6].round())
    assert torch.equal(xa[:, 1] + xa[:, 2], xa[:, 3])
    assert (xa[:, 4] <= x[:, 4]).all() and (xa[:, 6] >= x[:, 6]).all()
    assert ((xa[:, 1] - x[:, 1]).abs() <= 800).all()
    if budget is not None:
        assert (result.cost <= budget + 1e-9).all()
    assert torch.equal(result.success, boosted(xa).argmax(dim=1) != y)
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
    c = attack(boosted, data.x[:80], data.y[:80], threat, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.x_adv, c.x_adv)


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
