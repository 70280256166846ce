"""Shared set-ups of the tabular attack tests (CPGD, MoEvA): the LP known answer on a linear model, and
a mixed schema with a relation, integers, categories, directions and a cost, with seeded records and
the constraint checks every attack's records must pass on it. (Not a test module: pytest does not
rewrite its asserts, so each one says what broke.)"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog
from torch import nn

from bastion.tabular import (
    Encoder,
    Feature,
    Relation,
    TabularAttack,
    TabularAttackResult,
    TabularClassifier,
    TabularData,
    TabularSchema,
    TabularThreatModel,
    TorchTabularClassifier,
)

# -- known answer: logit(1) - logit(0) = w.x + b on 4 numeric features; the cheapest change is an LP ----
LIN = TabularSchema(
    features=tuple(Feature(f"f{j}", "numeric", low=0, high=10, immutable=(j == 3)) for j in range(4)),
    classes=("0", "1"),
)
W = np.array([1.5, -2.0, 0.7, 3.0])
B = -4.0
MAX_CHANGE = {"f0": 1.0, "f1": 0.5, "f2": 2.0}


def linear_model() -> TorchTabularClassifier:
    """The logistic model above over LIN (identity encoder)."""
    enc = Encoder(LIN, torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    layer = nn.Linear(4, 2)
    with torch.no_grad():  # logit 1 - logit 0 = w.x + b
        layer.weight.copy_(torch.tensor([[0.0] * 4, W.tolist()]))
        layer.bias.copy_(torch.tensor([0.0, B]))
    return TorchTabularClassifier(layer, enc)


def lp_margin(x: np.ndarray, y: int, threat: TabularThreatModel) -> float:
    """min over allowed changes d of s * (w.(x + d) + b), s = +1 for class 1: the record (4,) with label
    ``y`` is flippable under ``threat`` (LIN, MAX_CHANGE, its budget) iff this is < 0."""
    s = 1.0 if y == 1 else -1.0
    up, down = [], []
    for j, f in enumerate(LIN.features):
        m = 0.0 if f.immutable else MAX_CHANGE.get(f.name, np.inf)
        up.append(min(10 - x[j], m))
        down.append(min(x[j], m))
    # variables d+ (4) and d- (4), both >= 0: minimise s * w.(d+ - d-), cost = weights . (d+ + d-)
    a_ub, b_ub = None, None
    if threat.budget is not None:
        wt = threat.cost_weights().numpy()
        a_ub, b_ub = np.concatenate([wt, wt])[None, :], [threat.budget]
    res = linprog(
        np.concatenate([s * W, -s * W]),
        A_ub=a_ub,
        b_ub=b_ub,
        bounds=[(0, u) for u in up] + [(0, d) for d in down],
        method="highs",
    )
    assert res.status == 0, f"the LP failed: {res.message}"
    return float(s * (W @ x + B) + res.fun)


def lp_case(
    budget: float | None,
) -> tuple[TorchTabularClassifier, TabularThreatModel, torch.Tensor, torch.Tensor, np.ndarray]:
    """The linear model, LIN's threat (MAX_CHANGE, ``budget``), 300 seeded records (300, 4) inside the
    ranges, labelled by the model itself (every record starts correctly classified), and each record's
    LP margin (300,): the attack should flip exactly the records whose margin is < 0."""
    model = linear_model()
    threat = TabularThreatModel(LIN, max_change=MAX_CHANGE, budget=budget)
    x = 1 + 8 * torch.rand(300, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = model(x).argmax(dim=1)
    margins = np.array([lp_margin(r, int(c), threat) for r, c in zip(x.numpy(), y.tolist(), strict=True)])
    return model, threat, x, y, margins


# -- a mixed schema: relations, budget, directions, categories, integers ---------------------------------
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
    """``n`` seeded records of MIXED (total = income + debt holds) with a label the features explain."""
    g = torch.Generator().manual_seed(1)

    def ints(lo: int, hi: int) -> torch.Tensor:
        return torch.randint(lo, hi, (n,), generator=g).double()

    income, debt = ints(0, 5000), ints(0, 5000)
    age, rate, housing = ints(18, 80), ints(0, 4), ints(0, 3)
    ratio = torch.rand(n, generator=g).double()
    x = torch.stack([age, income, debt, income + debt, rate, housing, ratio], dim=1)
    y = ((debt - income) / 2000 + x[:, 4] / 3 - (x[:, 5] == 0).double() + x[:, 6] > 0.3).long()
    return TabularData(x, y, MIXED, ("0", "1"))


def check_mixed_records(
    result: TabularAttackResult,
    x: torch.Tensor,
    y: torch.Tensor,
    model: TabularClassifier,
    budget: float | None,
) -> None:
    """Every record the attack returned for ``x`` (N, 7) keeps MIXED's constraints (re-checked here by
    hand, not by the library), and a success is exactly the model's misclassification of it."""
    xa = result.x_adv
    assert result.valid.all() and result.constraint_satisfaction == 1.0, "an invalid record came back"
    assert torch.equal(xa[:, 0], x[:, 0]), "the immutable age changed"
    assert torch.equal(xa[:, :6], xa[:, :6].round()), "an integer or a category code is fractional"
    assert ((xa[:, 5] >= 0) & (xa[:, 5] <= 2)).all() and ((xa[:, 4] >= 0) & (xa[:, 4] <= 3)).all(), (
        "a category code is out of range"
    )
    assert (xa[:, 4] <= x[:, 4]).all() and (xa[:, 6] >= x[:, 6]).all(), "a direction was broken"
    assert torch.equal(xa[:, 1] + xa[:, 2], xa[:, 3]), "total != income + debt"
    assert ((xa[:, 1] - x[:, 1]).abs() <= 800).all(), "income moved more than its max_change"
    if budget is not None:
        assert (result.cost <= budget + 1e-9).all(), "a record costs more than the budget"
    assert torch.equal(result.success, model(xa).argmax(dim=1) != y), "success is not the model's verdict"


def attack_mixed(
    attack: TabularAttack, model: TabularClassifier, n: int, budget: float | None
) -> tuple[torch.Tensor, torch.Tensor, TabularAttackResult]:
    """Attack the first ``n`` records of :func:`mixed_data` under MIXED (with ``budget``) at seed 0,
    check that the attack left its inputs alone and every record it returned
    (:func:`check_mixed_records`); returns the records (n, 7), their labels (n,) and the result."""
    data = mixed_data()
    x, y = data.x[:n], data.y[:n]
    before = x.clone()
    result = attack(model, x, y, TabularThreatModel(MIXED, budget=budget), seed=0)
    assert torch.equal(x, before), "the attack must not mutate its inputs"
    check_mixed_records(result, x, y, model, budget)
    return x, y, result
