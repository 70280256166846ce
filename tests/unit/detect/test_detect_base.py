"""The detector contract (fit → score → detect): calibration, errors, no mutation; confidence scores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.detect import ConfidenceDetector, Detector, DetectorError, FeatureSqueezing
from bastion.errors import DataError
from bastion.model import TorchClassifier


@pytest.fixture()
def linear10() -> TorchClassifier:
    """A random 10-class linear model on 20-d inputs in [0, 1] (scores are continuous: no ties)."""
    g = torch.Generator().manual_seed(0)
    module = nn.Linear(20, 10)
    with torch.no_grad():
        module.weight.copy_(3 * torch.randn(10, 20, generator=g))
        module.bias.copy_(torch.randn(10, generator=g))
    return TorchClassifier(module, num_classes=10, name="linear10")


def uniform(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 20, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["msp", "energy"])
@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_threshold_hits_the_requested_fpr_on_held_out_clean_data(linear10, kind, fpr):
    detector = ConfidenceDetector(kind, fpr=fpr).fit(linear10, uniform(4000, seed=1))
    assert detector.calibration.clean_fpr <= fpr
    assert detector.calibration.clean_fpr > fpr - 2 / 4000
    held_out = float(detector.detect(uniform(4000, seed=2)).double().mean())
    sigma = (fpr * (1 - fpr) / 4000) ** 0.5
    assert abs(held_out - fpr) < 4 * sigma + 1 / 4000


def test_msp_and_energy_scores_by_hand(linear10):
    x = uniform(8, seed=3)
    with torch.no_grad():
        logits = linear10(x)
    msp = ConfidenceDetector("msp").fit(linear10, uniform(50, seed=4))
    torch.testing.assert_close(msp.score(x).float(), 1 - torch.softmax(logits, 1).max(1).values)
    energy = ConfidenceDetector("energy", temperature=2.0).fit(linear10, uniform(50, seed=4))
    torch.testing.assert_close(energy.score(x).float(), -2.0 * torch.logsumexp(logits / 2.0, 1))


def test_detect_is_score_above_threshold_and_inputs_are_untouched(linear10):
    detector = ConfidenceDetector().fit(linear10, uniform(500, seed=5))
    x = uniform(300, seed=6)
    before = x.clone()
    scores, flagged = detector.score(x), detector.detect(x)
    assert scores.shape == (300,) and flagged.dtype == torch.bool
    assert torch.equal(flagged, scores > detector.threshold)
    assert torch.equal(x, before)
    assert not linear10.module.training


@pytest.mark.parametrize("detector", [ConfidenceDetector(), FeatureSqueezing()])
def test_unfitted_detector_says_to_fit_first(detector: Detector):
    x = torch.rand(4, 1, 8, 8)
    for call in (lambda: detector.score(x), lambda: detector.detect(x), lambda: detector.threshold):
        with pytest.raises(DetectorError, match=r"not fitted: call \.fit"):
            call()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.full((3, 20), float("nan")), "NaN"),
        (torch.rand(3, 21), "fitted on"),
        (torch.rand(0, 20), "non-empty"),
        (torch.rand(20), "non-empty"),
        (torch.full((3, 20), 2.0), "outside the model's bounds"),
        (torch.ones(3, 20, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_inputs_raise_data_errors(linear10, bad, match):
    detector = ConfidenceDetector().fit(linear10, uniform(100, seed=7))
    with pytest.raises(DataError, match=match):
        detector.score(bad)
    if match != "fitted on":
        with pytest.raises(DataError, match=match):
            ConfidenceDetector().fit(linear10, bad)


def test_bad_configuration():
    for kwargs in ({"fpr": 0.0}, {"fpr": 1.5}, {"batch_size": 0}, {"temperature": 0.0}, {"score": "odin"}):
        with pytest.raises(DetectorError):
            ConfidenceDetector(**kwargs)


def test_a_failed_refit_keeps_the_previous_fit(linear10):
    detector = ConfidenceDetector().fit(linear10, uniform(100, seed=8))
    threshold = detector.threshold
    with pytest.raises(DataError):
        detector.fit(linear10, torch.full((5, 20), float("nan")))
    assert detector.threshold == threshold


def test_package_exports_are_sorted_and_resolve():
    import bastion.detect

    assert bastion.detect.__all__ == sorted(bastion.detect.__all__)
    for name in bastion.detect.__all__:
        assert getattr(bastion.detect, name) is not None
