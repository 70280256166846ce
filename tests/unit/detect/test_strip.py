"""STRIP on a BadNets-backdoored digits CNN: the score by hand, self-overlays skipped, seeded and
batch-independent scores, >= 90% of triggered inputs caught at a held-out FRR near 5%, typed errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.data import load_digits
from bastion.data.dataset import Dataset
from bastion.detect.base import DetectorError
from bastion.detect.strip import STRIP
from bastion.model import TorchClassifier

TARGET = 0


@pytest.fixture(scope="module")
def backdoor(backdoored_digits) -> tuple[TorchClassifier, Dataset, Dataset]:
    """(backdoored digits CNN, clean train split, clean test split)."""
    return backdoored_digits.model, load_digits("train"), load_digits("test")


@pytest.fixture(scope="module")
def stamp(backdoored_digits):
    """The BadNets trigger the model was trained with: a white 2x2 patch in the bottom-right corner."""
    return backdoored_digits.trigger.apply


def test_the_backdoor_works(backdoor, stamp):
    model, _, test = backdoor
    with torch.no_grad():
        clean_acc = (model(test.x).argmax(1) == test.y).float().mean()
        hit = (model(stamp(test.x[test.y != TARGET])).argmax(1) == TARGET).float().mean()
    assert clean_acc > 0.9 and hit > 0.9, (clean_acc, hit)


def test_catches_triggered_inputs_at_the_configured_frr(backdoor, stamp):
    model, train, test = backdoor
    detector = STRIP(32, fpr=0.05).fit(model, train.x[:500])
    assert detector.calibration.clean_fpr <= 0.05
    caught = detector.detect(stamp(test.x[test.y != TARGET])).double().mean()
    frr = detector.detect(test.x).double().mean()  # held-out clean inputs
    assert caught >= 0.9, caught
    assert abs(frr - 0.05) <= 0.04, frr


def test_score_by_hand_and_self_overlays_skipped(backdoor):
    model, train, _ = backdoor
    pool = train.x[:10]
    detector = STRIP(4, seed=3).fit(model, pool)
    overlays = detector.overlays
    assert overlays.shape == (4, 1, 8, 8)
    assert all(any(torch.equal(o, p) for p in pool) for o in overlays)

    def by_hand(x: torch.Tensor) -> float:
        entropies = []
        for o in overlays:
            if torch.equal(o, x):
                continue  # an image is not blended with itself
            with torch.no_grad():
                p = torch.softmax(model((x + o).clamp(0, 1).unsqueeze(0)), 1)[0]
            entropies.append(float(-(p * p.log()).sum()))
        return -sum(entropies) / len(entropies)

    batch = torch.cat([train.x[20:23], overlays[:2]])  # two inputs equal to an overlay
    scores = detector.score(batch)
    for i in range(batch.shape[0]):
        assert float(scores[i]) == pytest.approx(by_hand(batch[i]), abs=1e-5)


def test_blend_saturates_at_the_model_bounds():
    """On bounds (-1, 1): blend = clamp(x + (overlay + 1), -1, 1); checked on a linear model."""
    g = torch.Generator().manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    model = TorchClassifier(module, bounds=(-1.0, 1.0), num_classes=3)
    pool = 2 * torch.rand(5, 1, 2, 3, generator=g) - 1
    x = 2 * torch.rand(4, 1, 2, 3, generator=g) - 1
    detector = STRIP(5).fit(model, pool)
    with torch.no_grad():
        blended = (x.unsqueeze(1) + detector.overlays.unsqueeze(0) + 1).clamp(-1, 1)
        logp = torch.log_softmax(model(blended.flatten(0, 1)), 1).view(4, 5, 3)
    expected = (logp.exp() * logp).sum(2).mean(1)
    torch.testing.assert_close(detector.score(x), expected.double())


def test_seeded_batch_independent_and_nothing_mutated(backdoor):
    model, train, test = backdoor
    pool, x = train.x[:64], test.x[:40]
    before_pool, before_x = pool.clone(), x.clone()
    a = STRIP(8, seed=1).fit(model, pool)
    b = STRIP(8, seed=1).fit(model, pool)
    c = STRIP(8, seed=2).fit(model, pool)
    torch.testing.assert_close(a.score(x), b.score(x))
    assert not torch.equal(a.overlays, c.overlays)
    # An input's score does not depend on the batch it is scored in.
    torch.testing.assert_close(a.score(x[5:9]), a.score(x)[5:9])
    pool.mul_(0.5)  # the detector kept its own copy of the overlays
    torch.testing.assert_close(a.score(x), b.score(x))
    assert torch.equal(x, before_x) and torch.equal(pool, 0.5 * before_pool)
    assert not model.module.training


def test_differentiable_score_carries_a_gradient(backdoor):
    model, train, test = backdoor
    detector = STRIP(4).fit(model, train.x[:20])
    x = test.x[:3].clone().requires_grad_(True)
    score = detector.differentiable_score(x)
    torch.testing.assert_close(score.detach().double(), detector.score(test.x[:3]))
    (grad,) = torch.autograd.grad(score.sum(), x)
    assert grad.shape == x.shape and bool(grad.abs().sum() > 0)


@pytest.mark.parametrize("bad", [{"n_overlays": 1}, {"n_overlays": 2.5}, {"seed": "0"}, {"fpr": 1.5}])
def test_bad_arguments(bad):
    with pytest.raises(DetectorError):
        STRIP(**bad)


def test_needs_enough_clean_inputs_and_a_fit(backdoor):
    model, train, _ = backdoor
    with pytest.raises(DetectorError, match="at least n_overlays=16"):
        STRIP(16).fit(model, train.x[:10])
    with pytest.raises(DetectorError, match="not fitted"):
        STRIP().score(train.x[:2])
