"""robustness_report: balanced accuracy and MCC against scikit-learn, and the degenerate-model flag."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef

from bastion.errors import DataError
from bastion.tabular import (
    CPGD,
    Feature,
    TabularData,
    TabularSchema,
    TabularThreatModel,
    balanced_accuracy,
    matthews,
    robustness_report,
    train_mlp,
)

SCHEMA = TabularSchema(features=(Feature("a", "numeric", low=-5, high=5),), classes=("0", "1"))


class Constant:
    """Predicts class ``k`` for every record."""

    differentiable = False
    schema = SCHEMA
    num_classes = 2

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((len(x),), self.k), 2).float()


@pytest.mark.parametrize("k", [2, 3])
def test_metrics_match_scikit_learn(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    y = torch.randint(0, k, (500,), generator=g)
    pred = torch.where(torch.rand(500, generator=g) < 0.6, y, torch.randint(0, k, (500,), generator=g))
    assert balanced_accuracy(y, pred, k) == pytest.approx(balanced_accuracy_score(y, pred))
    assert matthews(y, pred, k) == pytest.approx(matthews_corrcoef(y, pred))
    assert matthews(y, torch.zeros_like(y), k) == 0.0


def data(n: int, share_one: float) -> TabularData:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, generator=g) < share_one).long()
    a = (2 * y.double() - 1) + torch.randn(n, generator=g, dtype=torch.float64)
    return TabularData(a[:, None].clamp(-5, 5), y, SCHEMA, ("0", "1"))


def test_a_constant_model_is_flagged_however_robust_it_looks() -> None:
    d = data(400, 0.3)
    rep = robustness_report(Constant(0), d.x, d.y)
    assert rep.degenerate and "one class" in rep.reason
    assert rep.clean_accuracy == pytest.approx(float((d.y == 0).double().mean()))
    assert rep.balanced_accuracy == 0.5 and rep.mcc == 0.0 and rep.majority_prediction == 1.0
    assert rep.robust_accuracy is None


def test_a_real_model_is_not_flagged_and_gets_the_attack_number() -> None:
    d = data(400, 0.5)
    model = train_mlp(d, hidden=(8,), epochs=20, seed=0, lr=0.01)
    result = CPGD(steps=5)(model, d.x, d.y, TabularThreatModel(SCHEMA, max_change={"a": 0.5}))
    rep = robustness_report(model, d.x, d.y, result)
    assert not rep.degenerate and rep.reason == ""
    assert rep.mcc > 0.5 and rep.robust_accuracy == result.robust_accuracy < rep.clean_accuracy
    assert rep.to_dict()["robust_accuracy"] == result.robust_accuracy


def test_one_class_data_is_not_a_degenerate_model() -> None:
    d = data(400, 0.99)
    assert not robustness_report(Constant(1), d.x, d.y).degenerate  # the labels are one class too
    with pytest.raises(DataError, match="threshold"):
        robustness_report(Constant(1), d.x, d.y, threshold=0.3)
