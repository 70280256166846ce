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

WEIGHTS = Path(__file__).resolve().parents[2] / "src" / "bastion" / "zoo" / "weights"
NAMES = sorted(HARDENED)


def test_hardened_models_are_listed():
    assert set(NAMES) <= set(zoo.available())
    assert {"digits-cnn-fgsm", "digits-cnn-pgd", "digits-cnn-trades"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_records_the_training(name):
    card = zoo.card(name)
    assert card["method"] in name.replace("fgsm", "fgsm-rs")
    assert card["threat"]["norm"] == "linf" and card["threat"]["epsilon"] > 0
    for key in ("epochs", "batch_size", "lr", "seed", "guard"):
        assert key in card["training"]
    assert card["train_seconds"] > 0 and card["history"]
    ev = card["evaluation"]
    assert ev["preset"] == "standard" and ev["n"] >= 450
    assert 0 < ev["robust_accuracy"] <= ev["clean_accuracy"] == card["clean_accuracy"]
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
