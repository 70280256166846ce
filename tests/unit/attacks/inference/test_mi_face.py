"""MI-Face: known answers on a softmax regression, the NES estimate, exact query accounting, policies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.inference.mi_face import MIFace, total_variation
from bastion.errors import AttackError
from bastion.model import TorchClassifier

SHAPE = (1, 6, 6)


def linear(seed: int = 0, classes: int = 5) -> tuple[TorchClassifier, torch.Tensor]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, classes))
    with torch.no_grad():
        net[1].bias.zero_()
        net[1].weight.mul_(3)
    return TorchClassifier(net, bounds=(-1.0, 1.0), num_classes=classes), net[1].weight.detach().clone()


class Counting:
    """Counts the rows sent to a classifier (independent of the attack's own count)."""

    def __init__(self, model, release=None):
        self.model, self.release, self.rows = model, release, 0
        self.bounds, self.num_classes = model.bounds, model.num_classes

    def __call__(self, x):
        self.rows += x.shape[0]
        logits = self.model(x)
        if self.release is None:
            return logits
        return torch.log(self.release(torch.softmax(logits, 1)).clamp_min(1e-12))


def one_hot(p):
    return torch.nn.functional.one_hot(p.argmax(1), p.shape[1]).float()


def round2(p):
    return torch.round(p * 100) / 100


@pytest.mark.parametrize(("gradient", "floor"), [("white-box", 0.99), ("nes", 0.95)])
def test_recovers_the_weight_direction_of_a_linear_model(gradient, floor):
    # At x = 0 with zero bias p is uniform, so grad p_k = p_k (W_k - mean W): MI-Face's first steps go
    # along W_k - mean_j W_j, and small steps stay far from the bounds (no clipping).
    model, w = linear()
    result = MIFace(steps=20, step_size=0.05, gradient=gradient, samples=200).run(
        model, [0, 1, 2, 3, 4], shape=SHAPE, seed=1
    )
    moved = result.reconstructions.flatten(1)  # minus the zero start
    cos = torch.nn.functional.cosine_similarity(moved, w - w.mean(0))
    assert bool((cos > floor).all()), cos
    # and nothing like the other classes' directions
    other = torch.nn.functional.cosine_similarity(moved, (w - w.mean(0)).roll(1, 0))
    assert bool((other < 0.5).all())
    assert result.white_box == (gradient == "white-box")
    assert bool((result.confidence > 0.2).all())  # from 1/5 at the start


def test_nes_estimate_matches_the_true_gradient_on_a_smooth_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.Tanh(), nn.Linear(16, 4))
    model = TorchClassifier(net, bounds=(-1.0, 1.0))
    x = torch.rand(3, *SHAPE) * 0.5 - 0.25
    k = torch.tensor([0, 2, 3])
    g = torch.Generator().manual_seed(0)
    p_true, _, g_true = MIFace(gradient="white-box").cost_and_gradient(model, x, k, g)
    p_est, c_est, g_est = MIFace(samples=4000, sigma=1e-3).cost_and_gradient(model, x, k, g)
    torch.testing.assert_close(p_est, p_true)
    torch.testing.assert_close(c_est, 1 - p_true)
    cos = torch.nn.functional.cosine_similarity(g_est.flatten(1), g_true.flatten(1))
    assert bool((cos > 0.9).all()), cos
    ratio = g_est.flatten(1).norm(dim=1) / g_true.flatten(1).norm(dim=1)
    assert bool(((ratio > 0.8) & (ratio < 1.25)).all()), ratio


@pytest.mark.parametrize("gradient", ["nes", "white-box"])
def test_query_accounting_is_exact(gradient):
    model, _ = linear()
    counted = Counting(model)
    attack = MIFace(steps=7, patience=100, threshold=0.0, gradient=gradient, samples=10)
    result = attack.run(counted, [0, 3], shape=SHAPE)
    per_eval = 1 if gradient == "white-box" else 11
    assert result.queries == counted.rows == 2 * 8 * per_eval  # steps + 1 evaluations per class
    assert result.steps.tolist() == [7, 7] and result.stop_reason == ("steps", "steps")
    assert result.gradient_evals == (16 if gradient == "white-box" else 0)


def test_query_budget_per_class_is_respected():
    model, _ = linear()
    counted = Counting(model)
    result = MIFace(steps=100, threshold=0.0, samples=10, max_queries=50).run(counted, [1, 2, 4], shape=SHAPE)
    assert result.stop_reason == ("budget",) * 3
    assert result.queries == counted.rows == 3 * 4 * 11  # 4 evaluations of 11 rows fit in 50
    with pytest.raises(AttackError, match="below one evaluation"):
        MIFace(samples=10, max_queries=5).run(model, [0], shape=SHAPE)


def test_seeded_and_caller_tensors_untouched():
    model, _ = linear()
    start = torch.zeros(SHAPE)
    a = MIFace(steps=5, samples=8).run(model, [0, 1], start=start, seed=3)
    b = MIFace(steps=5, samples=8).run(model, [0, 1], start=start, seed=3)
    c = MIFace(steps=5, samples=8).run(model, [0, 1], start=start, seed=4)
    torch.testing.assert_close(a.reconstructions, b.reconstructions)
    assert not torch.equal(a.reconstructions, c.reconstructions)
    assert bool((start == 0).all())


def test_threshold_and_patience_stops():
    model, _ = linear()
    easy = MIFace(steps=500, step_size=1.0, threshold=0.5, gradient="white-box").run(model, [0], shape=SHAPE)
    assert easy.stop_reason == ("threshold",) and float(easy.cost[0]) <= 0.5 and int(easy.steps[0]) < 500
    # label-only: p_k is 0 or 1; probes this close to the start never change the label, the estimate
    # is exactly zero and the attack stalls where it started (stopped by patience), as it should report
    biased, _ = linear()
    with torch.no_grad():
        biased.module[1].bias[2] = 3.0  # the zero start lies well inside class 2, not on a tie
    label_only = Counting(biased, one_hot)
    at_start = 2
    others = [0, 1, 3, 4]
    r = MIFace(steps=50, patience=5, samples=10, sigma=1e-3).run(label_only, others, shape=SHAPE)
    assert r.stop_reason == ("patience",) * 4 and bool((r.confidence < 1e-6).all())
    assert bool((r.reconstructions == 0).all()) and r.queries == label_only.rows
    # the start's own class is already "recognised" with confidence 1 (cost 0 <= threshold)
    r0 = MIFace(steps=50, patience=5, samples=10).run(label_only, [at_start], shape=SHAPE)
    assert r0.stop_reason == ("threshold",) and float(r0.confidence[0]) > 0.999


def test_rounded_outputs_hide_small_differences():
    model, _ = linear()
    rounded = Counting(model, round2)
    small = MIFace(steps=30, patience=5, samples=20, sigma=1e-4).run(rounded, [0, 1], shape=SHAPE)
    assert small.stop_reason == ("patience", "patience") and bool((small.reconstructions == 0).all())
    large = MIFace(steps=30, patience=5, samples=20, sigma=0.1, step_size=0.5).run(
        rounded, [0, 1], shape=SHAPE
    )
    assert bool((large.confidence > 0.2).all())  # a wider probe still sees the rounded differences


def test_total_variation_and_postprocess():
    flat = torch.full((2, 1, 4, 4), 0.3)
    assert total_variation(flat).tolist() == [0.0, 0.0]
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., ::2] = 1.0
    torch.testing.assert_close(total_variation(stripes), torch.tensor([1.0]))
    model, _ = linear()
    smooth = MIFace(steps=10, gradient="white-box", tv_weight=1.0, postprocess="denoise").run(
        model, [0], shape=SHAPE
    )
    rough = MIFace(steps=10, gradient="white-box").run(model, [0], shape=SHAPE)
    assert float(total_variation(smooth.reconstructions)) < float(total_variation(rough.reconstructions))


def test_normalised_step_has_the_requested_rms_and_reaches_the_class_faster():
    model, w = linear()
    start = torch.zeros(SHAPE)
    one = MIFace(steps=1, threshold=0.0, step_size=0.01, gradient="white-box", normalize=True).run(
        model, [0, 1], start=start
    )
    # best iterate after one step is the stepped one (cost fell); nothing clipped in (-1, 1)
    moved = one.reconstructions.flatten(1)
    torch.testing.assert_close(moved.norm(dim=1) / 36**0.5, torch.full((2,), 0.01))
    cos = torch.nn.functional.cosine_similarity(moved, (w - w.mean(0))[:2])
    assert bool((cos > 0.999).all())
    raw = MIFace(steps=30, step_size=0.01, gradient="white-box").run(model, [0], start=start)
    fast = MIFace(steps=30, step_size=0.01, gradient="white-box", normalize=True).run(model, [0], start=start)
    assert float(fast.confidence[0]) > float(raw.confidence[0])


def test_errors():
    with pytest.raises(AttackError, match="gradient"):
        MIFace(gradient="finite")
    with pytest.raises(AttackError, match="even"):
        MIFace(samples=3)
    model, _ = linear()
    with pytest.raises(AttackError, match="shape"):
        MIFace().run(model, [0])
    with pytest.raises(AttackError, match="classes must lie"):
        MIFace().run(model, [7], shape=SHAPE)
