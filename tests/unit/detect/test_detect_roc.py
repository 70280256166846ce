"""ROC helpers: hand-computed answers, ties, agreement with scikit-learn, the threshold rule, validation."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.attacks.evasion.pgd import PGD
from bastion.detect import (
    DetectorError,
    roc_auc,
    roc_curve,
    successful_adversarials,
    threshold_at_fpr,
    tpr_at_fpr,
)
from bastion.errors import DataError
from bastion.evaluation import evaluate
from bastion.threat import ThreatModel


def test_auc_by_hand():
    # adv 0.35 beats 3 clean scores, 0.5 and 0.6 beat 4, 0.05 beats none: 11 of 16 pairs.
    assert roc_auc([0.1, 0.2, 0.3, 0.4], [0.35, 0.5, 0.6, 0.05]) == pytest.approx(11 / 16)
    assert roc_auc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert roc_auc([2.0, 3.0], [0.0, 1.0]) == 0.0


def test_auc_counts_ties_half():
    # adv 1 beats clean 0 and ties clean 1 (1.5); adv 2 beats both (2): 3.5 of 4.
    assert roc_auc([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.875)
    assert roc_auc([1.0, 1.0, 1.0], [1.0, 1.0]) == pytest.approx(0.5)


def test_roc_curve_by_hand():
    fpr, tpr, thresholds = roc_curve([1.0, 2.0], [2.0, 3.0])
    assert thresholds.tolist() == [3.0, 2.0, 1.0, -math.inf]
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert torch.trapezoid(tpr, fpr).item() == pytest.approx(roc_auc([1.0, 2.0], [2.0, 3.0]))


def test_auc_agrees_with_sklearn_and_the_curve_with_many_ties():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 20, (300,), generator=g).double()
    adv = torch.randint(5, 30, (200,), generator=g).double()
    expected = roc_auc_score([0] * 300 + [1] * 200, torch.cat([clean, adv]).numpy())
    assert roc_auc(clean, adv) == pytest.approx(expected, abs=1e-12)
    curve = roc_curve(clean, adv)
    assert torch.trapezoid(curve.tpr, curve.fpr).item() == pytest.approx(expected, abs=1e-12)
    assert bool((curve.fpr.diff() >= 0).all() and (curve.tpr.diff() >= 0).all())


def test_threshold_and_tpr_at_fpr_by_hand():
    clean = [float(i) for i in range(1, 21)]  # 20 clean scores
    adv = [18.5, 19.0, 19.5, 25.0]
    assert threshold_at_fpr(clean, 0.05) == 19.0  # one false positive allowed: only 20 > 19
    assert tpr_at_fpr(clean, adv, 0.05) == 0.5  # 19.5 and 25 are > 19
    assert threshold_at_fpr(clean, 0.10) == 18.0
    assert tpr_at_fpr(clean, adv, 0.10) == 1.0
    assert threshold_at_fpr(clean, 0.01) == 20.0  # fewer than 1/fpr scores: no false positive at all
    assert tpr_at_fpr(clean, adv, 0.01) == 0.25


def test_threshold_never_exceeds_the_requested_fpr_with_ties():
    clean = torch.tensor([0.0] * 90 + [1.0] * 10)
    t = threshold_at_fpr(clean, 0.05)
    assert float((clean > t).double().mean()) <= 0.05
    assert t == 1.0


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, math.nan, True, "0.05"])
def test_bad_fpr(fpr):
    with pytest.raises(DetectorError, match="fpr"):
        threshold_at_fpr([0.1, 0.2], fpr)


@pytest.mark.parametrize(
    ("scores", "match"),
    [([], "non-empty"), ([[0.1, 0.2]], "1-D"), ([0.1, math.nan], "NaN"), ([0.1, math.inf], "NaN")],
)
def test_bad_scores(scores, match):
    with pytest.raises(DataError, match=match):
        roc_auc(scores, [0.5])
    with pytest.raises(DataError, match=match):
        roc_curve([0.5], scores)


def test_successful_adversarials_are_only_fooled_clean_correct_inputs(digits_model, digits_data):
    _, _, x, y = digits_data
    x, y = x[:40], y[:40]
    result = evaluate(digits_model, x, y, ThreatModel("linf", 0.1), attacks=[("pgd", PGD(steps=10))])
    adv = successful_adversarials(result)
    counted = result.clean_correct & ~result.robust
    assert adv.shape[0] == int(counted.sum()) > 0
    with torch.no_grad():
        assert bool((digits_model(adv).argmax(1) != y[counted]).all())
