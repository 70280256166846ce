"""harden --method ablation: a SoftVote's base trained on random bands certifies against patches; the
objective refuses other models and normalised inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.certify.derandomized import Ablation, DerandomizedSmoothing, SoftVote
from bastion.data import load_dataset
from bastion.defenses.training import METHODS, TrainingConfig, harden
from bastion.defenses.training.ablation import AblationTraining
from bastion.errors import DefenseError


def _soft(kind: str, size: int) -> SoftVote:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10))
    return SoftVote(base, Ablation(kind, size), (0.0, 1.0))  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "size"), [("column", 2), ("block", 4)])
def test_ablation_training_makes_a_certifiable_model(kind, size) -> None:
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    config = TrainingConfig(epochs=8, batch_size=64, lr=3e-3, validation=0.0)
    trained = harden(_soft(kind, size), train, "ablation", config=config).module
    untrained = _soft(kind, size)
    cert = DerandomizedSmoothing(kind, size).certify(trained.base, test.x)  # type: ignore[arg-type]
    before = DerandomizedSmoothing(kind, size).certify(untrained.base, test.x)
    assert cert.certified_accuracy(test.y) > 0.75  # the smoothed classifier is accurate
    assert cert.certified_accuracy(test.y, 1) > 0.15 > before.certified_accuracy(test.y, 1)
    # the SoftVote itself (what attack and evaluate see: mean probabilities) mostly agrees with the hard votes
    with torch.no_grad():
        soft_pred = trained(test.x).argmax(1)
    assert float((soft_pred == cert.prediction).float().mean()) > 0.8


def test_wrong_models_are_refused() -> None:
    assert METHODS["ablation"] is AblationTraining
    train = load_dataset("digits", split="train").take(64, seed=0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(DefenseError, match="SoftVote"):
        harden(plain, train, "ablation", config=TrainingConfig(epochs=1, validation=0.0))
    with pytest.raises(DefenseError, match="without --mean/--std"):
        AblationTraining().bind(_soft("column", 2), lambda t: (t - 0.5) / 0.5)
