"""DefendedClassifier and evaluate_defense: gradients by mode, randomness, and the adaptive numbers against an
independent BPDA + EOT PGD written here."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bastion import ThreatModel, zoo
from bastion.attacks import get
from bastion.data import load_dataset
from bastion.defenses import (
    JPEG,
    BitDepth,
    DefendedClassifier,
    DefenseError,
    MedianSmoothing,
    RandomResizePad,
    Transform,
    evaluate_defense,
)
from bastion.model import Classifier

EPS = 0.2  # linf on digits 8x8: the undefended digits-cnn is at 0% robust accuracy here


@pytest.fixture(scope="module")
def cnn():
    return zoo.load("digits-cnn")


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", split="test").take(100, seed=0)
    return ds.x, ds.y


def test_is_a_classifier_and_computes_model_of_transform(cnn, digits):
    x, _ = digits
    defended = DefendedClassifier(cnn, "jpeg:50,bits:3")
    assert isinstance(defended, Classifier)
    assert defended.bounds == cnn.bounds and defended.num_classes == 10
    assert defended.spec == "jpeg:50,bits:3" and not defended.randomized
    with torch.no_grad():
        expected = cnn(BitDepth(3)(JPEG(50)(x)))
        assert torch.equal(defended(x), expected)


@pytest.mark.parametrize("spec", ["bits:3", "jpeg:75"])
def test_gradients_by_mode(cnn, digits, spec):
    x, y = digits[0][:16], digits[1][:16]

    def grad(mode: str, inputs: torch.Tensor) -> torch.Tensor:
        xr = inputs.clone().requires_grad_(True)
        clf = DefendedClassifier(cnn, spec, mode=mode)  # type: ignore[arg-type]
        (g,) = torch.autograd.grad(F.cross_entropy(clf(xr), y, reduction="sum"), xr)
        return g

    assert float(grad("naive", x).abs().max()) == 0, "naive: rounding gives zero gradients"
    bpda = grad("bpda", x)
    assert float(bpda.abs().min(dim=0).values.max()) > 0
    z = DefendedClassifier(cnn, spec).transform(x).requires_grad_(True)  # identity surrogate: the
    (expected,) = torch.autograd.grad(F.cross_entropy(cnn(z), y, reduction="sum"), z)  # model's gradient
    assert torch.allclose(bpda, expected)  # at the transformed input, passed straight through


def test_median_gradient_is_the_same_in_both_modes(cnn, digits):
    x = digits[0][:8]
    grads = []
    for mode in ("naive", "bpda"):
        xr = x.clone().requires_grad_(True)
        DefendedClassifier(cnn, [MedianSmoothing(2)], mode=mode)(xr).sum().backward()  # type: ignore[arg-type]
        grads.append(xr.grad)
    assert torch.equal(grads[0], grads[1]) and float(grads[0].abs().sum()) > 0


def test_randomness_is_seeded_and_fresh_per_call(cnn, digits):
    x = digits[0][:8]
    a, b = DefendedClassifier(cnn, "resize-pad", seed=3), DefendedClassifier(cnn, "resize-pad", seed=3)
    assert a.randomized
    with torch.no_grad():
        first, second = a(x), a(x)
        assert not torch.equal(first, second), "each forward pass draws anew (what EOT averages over)"
        assert torch.equal(b(x), first), "same seed, same draws"
        a.reset()
        assert torch.equal(a(x), first)
        assert not torch.equal(DefendedClassifier(cnn, "resize-pad", seed=4)(x), first)


def test_every_kind_of_attack_runs_against_it(cnn, digits):
    x, y = digits[0][:12], digits[1][:12]
    threat = ThreatModel("linf", EPS, bounds=cnn.bounds)
    defended = DefendedClassifier(cnn, "resize-pad,bits:4")
    for attack in (get("pgd", steps=5, eot_samples=3), get("square", n_queries=50), get("fgsm")):
        res = attack(defended, x, y, threat, seed=0)
        assert res.x_adv.shape == x.shape and float((res.x_adv - x).abs().max()) <= EPS + 1e-6


def test_validation(cnn):
    with pytest.raises(DefenseError, match="bpda, naive"):
        DefendedClassifier(cnn, "bits", mode="strong")  # type: ignore[arg-type]
    with pytest.raises(DefenseError, match="valid transforms"):
        DefendedClassifier(cnn, "blur:3")
    with pytest.raises(DefenseError, match="at least one"):
        DefendedClassifier(cnn, [])
    with pytest.raises(DefenseError, match="eot_samples"):
        evaluate_defense(
            cnn,
            torch.zeros(2, 1, 8, 8),
            torch.zeros(2).long(),
            ThreatModel("linf", 0.1),
            "bits",
            eot_samples=0,
        )


def _independent_pgd(
    model: Classifier, x: torch.Tensor, y: torch.Tensor, t: Transform, *, eot: int, steps: int = 100
) -> float:
    """PGD-``steps`` (linf, CE, random start, step 2.5 eps / steps), BPDA with the identity as the
    backward pass of ``t``, the gradient averaged over ``eot`` fresh draws of ``t`` (batched). Returns the
    robust accuracy: correct on a clean draw and on a draw at the final iterate."""
    g = torch.Generator().manual_seed(123)
    x_adv = (x + (2 * torch.rand(x.shape, generator=g) - 1) * EPS).clamp(0, 1)
    labels = y.repeat(eot)
    for _ in range(steps):
        xr = x_adv.repeat(eot, 1, 1, 1).requires_grad_(True)
        z = xr + (t(xr.detach(), generator=g) - xr).detach()  # forward t(x), backward identity
        loss = F.cross_entropy(model(z), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xr)
        step = grad.view(eot, *x.shape).sum(0).sign() * 2.5 * EPS / steps
        x_adv = torch.min(torch.max(x_adv + step, x - EPS), x + EPS).clamp(0, 1).detach()
    with torch.no_grad():
        clean = model(t(x, generator=g)).argmax(1) == y
        adv = model(t(x_adv, generator=g)).argmax(1) == y
    return float((clean & adv).float().mean())


@pytest.fixture(scope="module")
def bits3(cnn, digits):
    return evaluate_defense(cnn, *digits, ThreatModel("linf", EPS, bounds=cnn.bounds), "bits:3", "fast")


def test_gradient_masking_shows_as_a_gap(bits3, cnn, digits):
    assert bits3.naive.clean_accuracy > 0.95
    assert bits3.naive.robust_accuracy > 0.85, "bits:3 masks gradients: naive attacks fail"
    assert bits3.adaptive.robust_accuracy < 0.2, "BPDA breaks it"
    assert bits3.believe == "adaptive" and bits3.eot_samples == 1
    jpeg = evaluate_defense(cnn, *digits, ThreatModel("linf", EPS, bounds=cnn.bounds), "jpeg:75", "fast")
    assert jpeg.naive.robust_accuracy - jpeg.adaptive.robust_accuracy > 0.6


def test_bits_adaptive_is_as_strong_as_independent_bpda_pgd(bits3, cnn, digits):
    reference = _independent_pgd(cnn, *digits, BitDepth(3), eot=1)
    assert bits3.adaptive.robust_accuracy <= reference + 0.01


@pytest.mark.slow
def test_resize_pad_adaptive_is_as_strong_as_independent_bpda_eot_pgd(cnn, digits):
    threat = ThreatModel("linf", EPS, bounds=cnn.bounds)
    result = evaluate_defense(cnn, *digits, threat, [RandomResizePad()], "fast")
    assert result.eot_samples == 20, "a randomised transform gets EOT-20 by default"
    reference = _independent_pgd(cnn, *digits, RandomResizePad(), eot=20)
    assert result.adaptive.robust_accuracy <= reference + 0.01


def test_adaptive_counts_what_naive_broke_and_serialises(bits3):
    naive, adaptive = bits3.naive, bits3.adaptive
    assert adaptive.stages[-1].attack == "naive-union"
    assert bool((adaptive.robust <= naive.robust).all()), "an input either evaluation broke is not robust"
    assert adaptive.robust_accuracy == pytest.approx(float(adaptive.robust.float().mean()))
    assert bits3.robust_accuracy == adaptive.robust_accuracy <= naive.robust_accuracy
    d = json.loads(json.dumps(bits3.to_dict()))
    assert d["believe"] == "adaptive" and d["robust_accuracy"] == adaptive.robust_accuracy
    assert d["naive_robust_accuracy"] == naive.robust_accuracy and "BPDA" in d["explanation"]
    assert d["adaptive"]["mode"] == "bpda" and d["naive"]["mode"] == "naive"
    assert d["adaptive"]["preset"] == "fast" and d["adaptive"]["defense"] == "bits:3"


def test_sharded_and_resumed_equals_one_pass(bits3, cnn, digits, tmp_path):
    """A deterministic defense on the shard runner: shards of 30 (a last short one), both evaluations kept
    under the run directory, give the one-pass result input for input; a second call reads every shard
    back; a randomised transform is refused there."""
    from bastion.engine import LocalEngine

    threat = ThreatModel("linf", EPS, bounds=cnn.bounds)
    runs = [
        evaluate_defense(
            cnn,
            *digits,
            threat,
            "bits:3",
            "fast",
            engine=LocalEngine(threads=1),
            run_dir=tmp_path / "run",
            shard_size=30,
        )
        for _ in range(2)
    ]
    for res in runs:
        for part in ("naive", "adaptive"):
            got, want = getattr(res, part), getattr(bits3, part)
            assert torch.equal(got.robust, want.robust) and torch.equal(got.x_adv, want.x_adv), part
            assert [s.attack for s in got.stages] == [s.attack for s in want.stages]
            assert [s.n_fooled for s in got.stages] == [s.n_fooled for s in want.stages]
    assert runs[0].adaptive.extra["engine"]["resumed"] == []
    assert (
        runs[1].naive.extra["engine"]["resumed"]
        == runs[1].adaptive.extra["engine"]["resumed"]
        == [0, 1, 2, 3]
    )
    assert runs[1].adaptive.extra["defense"] == "bits:3" and runs[1].adaptive.extra["mode"] == "bpda"
    with pytest.raises(DefenseError, match="local engine"):
        evaluate_defense(cnn, *digits, threat, "resize-pad", "fast", run_dir=tmp_path / "random")
    assert not (tmp_path / "random").exists()
