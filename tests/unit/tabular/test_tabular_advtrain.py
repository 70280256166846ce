"""Constrained adversarial training: it must raise robust accuracy where a standard model leans on a
feature the attacker controls, keep every training adversarial valid, and be seeded."""

from __future__ import annotations

import pytest
import torch

from bastion.errors import DataError, ThreatModelError
from bastion.tabular import (
    CPGD,
    Feature,
    TabularData,
    TabularSchema,
    TabularThreatModel,
    TorchTabularClassifier,
    adversarial_train,
    train_mlp,
)
from bastion.tabular.attacks import base as attack_base

# f0: weakly predictive (about 84% alone), immutable; f1: almost perfectly predictive, and the attacker
# may move it by 1.0 (more than the class gap of 1.2 minus noise). The robust solution relies on f0.
SCHEMA = TabularSchema(
    features=(
        Feature("f0", "numeric", low=-3, high=3, immutable=True),
        Feature("f1", "numeric", low=-3, high=3),
    ),
    classes=("0", "1"),
)
THREAT = TabularThreatModel(SCHEMA, max_change={"f1": 1.0})


def make(n: int, seed: int) -> TabularData:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    s = 2 * y.double() - 1
    f0 = s * 0.5 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    f1 = s * 0.6 + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
    return TabularData(torch.stack([f0, f1], 1).clamp(-3, 3), y, SCHEMA, ("0", "1"))


def train_adv(mix: float = 0.5) -> TorchTabularClassifier:
    return adversarial_train(
        make(300, 0), THREAT, hidden=(16,), epochs=10, seed=0, lr=0.01, attack=CPGD(steps=5), mix=mix
    )


def test_adversarial_training_raises_robust_accuracy() -> None:
    test = make(200, 1)
    std = train_mlp(make(300, 0), hidden=(16,), epochs=10, seed=0, lr=0.01)
    adv = train_adv()
    attack = CPGD(steps=20)
    r_std = attack(std, test.x, test.y, THREAT, seed=0)
    r_adv = attack(adv, test.x, test.y, THREAT, seed=0)
    clean_adv = float((adv(test.x).argmax(1) == test.y).double().mean())
    assert r_std.robust_accuracy < 0.5, "the standard model should lean on the attackable feature"
    assert r_adv.robust_accuracy > r_std.robust_accuracy + 0.3
    assert clean_adv > 0.8 and r_adv.constraint_satisfaction == 1.0


def test_training_adversarials_are_valid_and_training_is_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    check = attack_base.satisfied

    def watched(x_adv: torch.Tensor, x: torch.Tensor, threat: TabularThreatModel) -> torch.Tensor:
        ok = check(x_adv, x, threat)
        seen.append(bool(ok.all()))
        return ok

    monkeypatch.setattr(attack_base, "satisfied", watched)
    a = train_adv(mix=1.0)
    assert seen and all(seen), "every adversarial the model trains on must satisfy the threat"
    b = train_adv(mix=1.0)
    for p, q in zip(a.module.parameters(), b.module.parameters(), strict=True):
        assert torch.equal(p, q)


def test_errors() -> None:
    data = make(20, 0)
    with pytest.raises(DataError, match="mix"):
        adversarial_train(data, THREAT, mix=1.5)
    with pytest.raises(DataError, match="clean_epochs"):
        adversarial_train(data, THREAT, epochs=2, clean_epochs=3)
    other = TabularSchema(features=(Feature("g", "numeric", low=0, high=1),), classes=("0", "1"))
    with pytest.raises(ThreatModelError, match="features differ"):
        adversarial_train(data, TabularThreatModel(other))
