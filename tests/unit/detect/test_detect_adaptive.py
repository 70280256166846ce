"""The adaptive attack: it evades detectors that stop non-adaptive PGD; budget, determinism, validation."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.evasion.pgd import PGD
from bastion.defenses import BitDepth
from bastion.detect import AdaptiveAttack, ConfidenceDetector, DetectorError, FeatureSqueezing, joint_success
from bastion.errors import AttackError, ThreatModelError
from bastion.threat import ThreatModel


@pytest.fixture()
def guarded(digits_model, digits_data):
    """(detector, x, y): feature squeezing fitted on training digits; 64 test digits to attack."""
    x_train, _, x_test, y_test = digits_data
    detector = FeatureSqueezing([BitDepth(bits=2)]).fit(digits_model, x_train[:400])
    return detector, x_test[:64], y_test[:64]


@pytest.mark.parametrize("kind", ["squeezing", "msp"])
def test_adaptive_evades_far_more_often_than_non_adaptive_pgd(guarded, digits_model, digits_data, kind):
    detector, x, y = guarded
    if kind == "msp":
        detector = ConfidenceDetector("msp").fit(digits_model, digits_data[0][:400])
    threat = ThreatModel("linf", 0.2)
    plain = PGD(steps=40)(digits_model, x, y, threat)
    plain_fooled, plain_evaded, _ = joint_success(detector, plain.x_adv, y)
    adaptive = AdaptiveAttack(steps=40)(detector, x, y, threat, seed=0)
    assert plain_fooled.float().mean() > 0.8  # PGD fools the model ...
    assert plain_evaded.float().mean() < 0.2  # ... but the detector catches it
    assert adaptive.evasion_rate > plain_evaded.float().mean() + 0.4


def test_result_is_in_budget_consistent_and_deterministic(guarded):
    detector, x, y = guarded
    before = x.clone()
    for norm, eps in (("linf", 0.2), ("l2", 1.5)):
        threat = ThreatModel(norm, eps)
        a = AdaptiveAttack(steps=10)(detector, x, y, threat, seed=3)
        b = AdaptiveAttack(steps=10)(detector, x, y, threat, seed=3)
        assert torch.equal(a.x_adv, b.x_adv)
        assert bool(threat.contains(x, a.x_adv).all())
        fooled, evaded, scores = joint_success(detector, a.x_adv, y)
        assert torch.equal(fooled, a.fooled) and torch.equal(evaded, a.evaded)
        assert torch.equal(a.evaded, a.fooled & (scores <= detector.threshold))
        assert a.evasion_rate <= a.classifier_success_rate
        assert a.x_adv.shape == x.shape and a.distance.shape == (64,)
    assert torch.equal(x, before)


def test_restarts_only_add_evasions(guarded):
    detector, x, y = guarded
    threat = ThreatModel("linf", 0.15)
    one = AdaptiveAttack(steps=10)(detector, x, y, threat, seed=1)
    three = AdaptiveAttack(steps=10, restarts=3)(detector, x, y, threat, seed=1)
    assert bool((three.evaded | ~one.evaded).all())
    assert three.evasion_rate >= one.evasion_rate


def test_validation(guarded, digits_model):
    detector, x, y = guarded
    with pytest.raises(ThreatModelError, match="bounds"):
        AdaptiveAttack(steps=2)(detector, x, y, ThreatModel("linf", 0.1, bounds=(0.0, 255.0)))
    with pytest.raises(DetectorError, match="not fitted"):
        AdaptiveAttack(steps=2)(FeatureSqueezing(), x, y, ThreatModel("linf", 0.1))
    for kwargs in ({"steps": 0}, {"step_size": -1.0}, {"detector_weight": -1.0}, {"restarts": 1.5}):
        with pytest.raises(AttackError):
            AdaptiveAttack(**kwargs)
