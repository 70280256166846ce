"""Feature squeezing: the score's definition, default squeezers, separation of PGD adversarials on digits
(and, with the shared data, the issue's MNIST target), BPDA scores, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bastion import zoo
from bastion.attacks.evasion.pgd import PGD
from bastion.data import load_mnist
from bastion.defenses import BitDepth, MedianSmoothing
from bastion.detect import DetectorError, FeatureSqueezing, default_squeezers, evaluate_detector
from bastion.threat import ThreatModel

MNIST = Path(__file__).resolve().parents[4] / "shared" / "data" / "mnist"


def test_score_is_the_largest_l1_distance_between_predictions(digits_model, digits_data):
    _, _, x, _ = digits_data
    squeezers = [BitDepth(bits=2), MedianSmoothing(size=2)]
    detector = FeatureSqueezing(squeezers).fit(digits_model, x[:100])
    batch = x[100:110]
    with torch.no_grad():
        p = torch.softmax(digits_model(batch), 1)
        dists = [(p - torch.softmax(digits_model(s(batch)), 1)).abs().sum(1) for s in squeezers]
    torch.testing.assert_close(detector.score(batch).float(), torch.maximum(*dists))
    scores = detector.score(x)
    assert bool((scores >= 0).all() and (scores <= 2).all())


def test_an_input_the_squeezer_leaves_unchanged_scores_zero(digits_model, digits_data):
    _, _, x, _ = digits_data
    detector = FeatureSqueezing([BitDepth(bits=2)]).fit(digits_model, x[:100])
    on_grid = BitDepth(bits=2)(x[:10])
    assert torch.equal(detector.score(on_grid), torch.zeros(10, dtype=torch.float64))


def test_default_squeezers_follow_xu_et_al():
    assert default_squeezers(torch.rand(2, 1, 28, 28)) == (BitDepth(bits=1), MedianSmoothing(size=2))
    assert default_squeezers(torch.rand(2, 3, 32, 32)) == (BitDepth(bits=5), MedianSmoothing(size=2))
    with pytest.raises(DetectorError, match="squeezers="):
        default_squeezers(torch.rand(2, 64))
    detector = FeatureSqueezing()
    assert detector.active_squeezers == ()


def test_bad_squeezers():
    for bad in ([], [lambda x: x], [BitDepth(bits=2), "median"]):
        with pytest.raises(DetectorError, match="squeezers"):
            FeatureSqueezing(bad)  # type: ignore[arg-type]


def test_separates_pgd_adversarials_from_clean_digits(digits_model, digits_data):
    x_train, _, x_test, y_test = digits_data
    detector = FeatureSqueezing([BitDepth(bits=2)]).fit(digits_model, x_train[:400])
    attack = PGD(steps=20)(digits_model, x_test[150:], y_test[150:], ThreatModel("linf", 0.2))
    report = evaluate_detector(detector, x_test[:150], attack.x_adv, y_adv=y_test[150:])
    assert report.n_adv == int(attack.success.sum()) > 100  # only successful adversarials count
    assert report.auc > 0.9
    assert report.tpr_at_5pct > 0.5  # 0.68 measured on this small MLP (0.98 on zoo:digits-cnn)
    assert 0.0 <= report.tpr_at_1pct <= report.tpr_at_5pct
    # Clean digits score near zero: the separation is not an artefact of a broken squeezer.
    assert float(report.clean_scores.median()) < 0.05


def test_differentiable_score_matches_and_carries_a_gradient(digits_model, digits_data):
    _, _, x, _ = digits_data
    detector = FeatureSqueezing([BitDepth(bits=2), MedianSmoothing(size=2)]).fit(digits_model, x[:100])
    batch = x[100:120].clone().requires_grad_(True)
    scores = detector.differentiable_score(batch)
    torch.testing.assert_close(scores.detach().double(), detector.score(batch.detach()))
    (grad,) = torch.autograd.grad(scores.sum(), batch)
    assert grad.shape == batch.shape and float(grad.abs().sum()) > 0


def test_mnist_cnn_detects_pgd_at_5pct_fpr():
    """Issue 4's target on a small sample: at least 90% of successful linf 0.3 PGD-40 adversarials."""
    if not MNIST.is_dir():
        pytest.skip(f"shared data not present at {MNIST}")
    model = zoo.load("mnist-cnn")
    ds = load_mnist(MNIST, "test").take(500, seed=0)
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(0))  # take() keeps file order
    x, y = ds.x[perm], ds.y[perm]
    detector = FeatureSqueezing().fit(model, x[:200])
    attack = PGD(steps=40)(model, x[400:], y[400:], ThreatModel("linf", 0.3))
    report = evaluate_detector(detector, x[200:400], attack.x_adv, y_adv=y[400:])
    assert report.n_adv > 90
    assert report.tpr_at_5pct >= 0.9
    assert report.auc > 0.95
