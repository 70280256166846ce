"""Shared set-ups of the tabular attack tests (CPGD, MoEvA): the LP known answer on a linear model and
a mixed schema with a relation, integers, categories, directions and a cost, with seeded records."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog
from torch import nn

from bastion.tabular import (
    Encoder,
    Feature,
    Relation,
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
    assert res.status == 0
    return float(s * (W @ x + B) + res.fun)


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
