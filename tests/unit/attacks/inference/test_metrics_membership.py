"""Membership metrics against known answers: separation, chance, ties, Mann-Whitney U, LiRA's TPR rule."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import mannwhitneyu

from bastion.attacks.inference.metrics import (
    MembershipResult,
    balanced_accuracy,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from bastion.errors import DataError


def _labels(n_pos: int, n_neg: int) -> torch.Tensor:
    return torch.cat([torch.ones(n_pos, dtype=torch.bool), torch.zeros(n_neg, dtype=torch.bool)])


def test_perfect_separation() -> None:
    scores = torch.cat([torch.linspace(2, 3, 50), torch.linspace(0, 1, 70)])
    m = _labels(50, 70)
    assert roc_auc(scores, m) == 1.0
    assert balanced_accuracy(scores, m) == 1.0
    assert tpr_at_fpr(scores, m, 0.0) == 1.0
    assert roc_auc(-scores, m) == 0.0


def test_identical_distributions_are_chance() -> None:
    g = torch.Generator().manual_seed(0)
    n = 4000
    scores = torch.randn(2 * n, generator=g)
    m = _labels(n, n)
    auc = roc_auc(scores, m)
    assert abs(auc - 0.5) < 4 / math.sqrt(2 * n)
    assert tpr_at_fpr(scores, m, 0.01) < 0.03


def test_auc_equals_mann_whitney_u_with_ties() -> None:
    g = torch.Generator().manual_seed(1)
    pos = torch.randint(0, 6, (37,), generator=g).double()  # heavy ties
    neg = torch.randint(0, 5, (53,), generator=g).double()
    u = mannwhitneyu(pos.numpy(), neg.numpy(), alternative="two-sided").statistic
    auc = roc_auc(torch.cat([pos, neg]), _labels(37, 53))
    assert auc == pytest.approx(u / (37 * 53), abs=1e-12)


def test_all_tied_is_half() -> None:
    assert roc_auc(torch.zeros(10), _labels(4, 6)) == 0.5
    assert balanced_accuracy(torch.zeros(10), _labels(4, 6)) == 0.5


def test_tpr_at_fpr_is_interpolation_free() -> None:
    # non-members 0..99; members: 5 above every non-member, 10 between the top two non-members
    neg = torch.arange(100).double()
    pos = torch.cat([torch.full((5,), 200.0), torch.full((10,), 98.5), torch.zeros(5)])
    s, m = torch.cat([pos, neg]), _labels(20, 100)
    assert tpr_at_fpr(s, m, 0.001) == 5 / 20  # only FPR = 0 qualifies
    assert tpr_at_fpr(s, m, 0.01) == 15 / 20  # one false positive (99) allowed
    assert tpr_at_fpr(s, m, 0.015) == 15 / 20  # no interpolation towards the next point


def test_roc_curve_endpoints_and_monotone() -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.randn(300, generator=g)
    m = torch.rand(300, generator=g) < 0.4
    c = roc_curve(s, m)
    assert (c.fpr[0], c.tpr[0]) == (0.0, 0.0)
    assert (c.fpr[-1], c.tpr[-1]) == (1.0, 1.0)
    assert bool((c.fpr.diff() >= 0).all()) and bool((c.tpr.diff() >= 0).all())
    # trapezoid area of the curve is the AUC (ties included)
    area = float(torch.trapezoid(c.tpr, c.fpr))
    assert area == pytest.approx(roc_auc(s, m), abs=1e-12)


def test_result_from_scores_and_dict() -> None:
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])
    m = torch.tensor([True, True, False, False])
    r = MembershipResult.from_scores(s, m, attack="x", queries=4, params={"a": 1})
    assert r.auc == 1.0 and r.tpr_at_0_1pct_fpr == 1.0 and r.n_members == 2
    d = r.to_dict()
    assert d["tpr_at_0.1%_fpr"] == 1.0 and d["queries"] == 4 and d["scores"] == [3.0, 2.0, 1.0, 0.0]
    with pytest.raises(AttributeError):
        r.auc = 0.0  # type: ignore[misc]


def test_bad_inputs_raise() -> None:
    with pytest.raises(DataError, match="members and non-members"):
        roc_auc(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(DataError, match="bool"):
        roc_auc(torch.ones(3), torch.ones(3))
    with pytest.raises(DataError, match="NaN"):
        roc_auc(torch.tensor([float("nan"), 1.0]), torch.tensor([True, False]))
