"""References trained with the target's own recipe (DP-SGD here): the attacker who knows the recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from bastion.attacks.inference.references import train_references
from bastion.data import load_dataset
from bastion.defenses.training.config import TrainingConfig
from bastion.errors import DataError

CFG = TrainingConfig(epochs=1, batch_size=32, lr=1e-2)
DP = {"target_epsilon": 3.0, "delta": 1e-3, "max_grad_norm": 1.0}


def _factory() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def test_references_train_with_the_given_method_and_refuse_another_on_resume(tmp_path: Path) -> None:
    pop = load_dataset("digits", split="train").subset(slice(0, 200))
    refs = train_references(_factory, pop, 2, tmp_path, seed=0, config=CFG, method="dp-sgd", options=DP)
    assert len(refs) == 2
    card = (tmp_path / "reference-000.json").read_text()
    assert '"dp-sgd"' in card and '"epsilon"' in card  # the card records the method and the budget spent
    # The folder remembers the recipe: the same call resumes, a standard run is refused.
    again = train_references(_factory, pop, 2, tmp_path, seed=0, config=CFG, method="dp-sgd", options=DP)
    assert len(again) == 2
    with pytest.raises(DataError, match="other settings"):
        train_references(_factory, pop, 2, tmp_path, seed=0, config=CFG)
