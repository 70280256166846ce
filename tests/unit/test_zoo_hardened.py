"""The zoo's hardened models: cards that tell how they were trained, weights that match, robustness
that a fresh attack confirms."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bastion import zoo
from bastion.data import load_dataset
from bastion.evaluation import evaluate
from bastion.threat import ThreatModel
from bastion.zoo.architectures import HARDENED

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "src" / "bastion" / "zoo" / "weights"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
NAMES = sorted(HARDENED)
ADVERSARIAL = [n for n in NAMES if zoo.card(n)["method"] in ("fgsm-rs", "atta", "pgd", "trades", "ibp")]
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST not present in ../shared/data")


def test_hardened_models_are_listed():
    assert set(NAMES) <= set(zoo.available())
    assert {"digits-cnn-fgsm", "digits-cnn-pgd", "digits-cnn-trades"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_records_the_training(name):
    card = zoo.card(name)
    assert card["method"] in name.replace("fgsm", "fgsm-rs")
    for key in ("epochs", "batch_size", "lr", "seed", "guard"):
        assert key in card["training"]
    assert card["train_seconds"] > 0 and card["history"]
    ev = card["evaluation"]
    assert ev["n"] >= 450 and ev["clean_accuracy"] == card["clean_accuracy"]
    if name in ADVERSARIAL:
        assert card["threat"]["norm"] == "linf" and card["threat"]["epsilon"] > 0
        assert ev["preset"] == "standard"
        assert 0 < ev["robust_accuracy"] <= ev["clean_accuracy"]
    digest = hashlib.sha256((WEIGHTS / f"{name}.safetensors").read_bytes()).hexdigest()
    assert digest == card["sha256"]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("digits")])
def test_digits_hardened_models_are_robust_where_the_plain_one_is_not(name):
    # 150 test digits at the training epsilon, `fast` preset: the plain model falls to ~0, the hardened
    # ones keep a good share, and no weaker attack finds more robustness than the card's standard preset.
    test = load_dataset("digits", split="test").take(150, seed=1)
    threat = ThreatModel("linf", zoo.card(name)["threat"]["epsilon"])
    plain = evaluate(zoo.load("digits-cnn"), test.x, test.y, threat, "fast").robust_accuracy
    hardened = evaluate(zoo.load(name), test.x, test.y, threat, "fast").robust_accuracy
    assert plain < 0.05
    assert hardened > 0.3, hardened
    assert abs(hardened - zoo.card(name)["evaluation"]["robust_accuracy"]) < 0.12


@needs_mnist
@pytest.mark.slow  # 26 s on 2 cores (verifies every MNIST test input); certify tests cover IBP's soundness
@pytest.mark.parametrize("name", [n for n in NAMES if zoo.card(n)["method"] == "ibp"])
def test_ibp_zoo_model_is_verified_as_its_card_says_and_certificates_hold(name):
    from bastion.certify import IntervalBoundPropagation

    cert = zoo.card(name)["certification"]
    test = load_dataset(f"mnist:{MNIST}", split="test")
    threat = ThreatModel("linf", cert["epsilon"])
    res = IntervalBoundPropagation().certify(zoo.load(name), test.x, threat)
    assert res.certified_accuracy(test.y, threat.epsilon) == pytest.approx(
        cert["verified_accuracy"], abs=1e-4
    )
    assert cert["verified_accuracy"] >= 0.9
    sub = test.take(200, seed=3)
    certified = (
        IntervalBoundPropagation().certify(zoo.load(name), sub.x, threat).certified(sub.y, threat.epsilon)
    )
    attacked = evaluate(zoo.load(name), sub.x, sub.y, threat, "fast", seed=0)
    assert bool(attacked.robust[certified].all())


@needs_mnist
@pytest.mark.parametrize("name", [n for n in NAMES if zoo.card(n)["method"] == "noise" and "mnist" in n])
def test_noise_zoo_model_certifies_under_smoothing(name):
    from bastion.certify import RandomizedSmoothing

    sigma = zoo.card(name)["method_options"]["sigma"]
    test = load_dataset(f"mnist:{MNIST}", split="test").take(20, seed=0)
    res = RandomizedSmoothing(sigma, n_estimate=2000).certify(zoo.load(name), test.x, seed=0)
    # With N = 2,000 the largest certifiable radius is ~2.9 sigma; most MNIST digits get far.
    assert res.certified_accuracy(test.y, 0.25) >= 0.8
    plain = RandomizedSmoothing(sigma, n_estimate=2000).certify(zoo.load("mnist-strided"), test.x, seed=0)
    assert res.certified_accuracy(test.y, 0.5) > plain.certified_accuracy(test.y, 0.5)
