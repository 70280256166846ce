"""BadNets and blended backdoors: exact counts, triggers in place, the rest untouched; and one end-to-end
run showing that a network trained on BadNets-poisoned digits obeys the trigger."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.poisoning import Backdoor, BlendTrigger, PatchTrigger, evaluate_backdoor
from bastion.data import Dataset, load_digits
from bastion.errors import AttackError, DataError


def synthetic(n: int = 100, k: int = 5, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.6 * torch.rand(n, 1, 8, 8, generator=g)  # never 0 or 1: every trigger pixel shows
    return Dataset(x, torch.arange(n) % k, num_classes=k, name="toy")


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.33])
def test_badnets_poisons_exactly_round_rate_n_non_target_samples(rate):
    data = synthetic()
    x_before = data.x.clone()
    res = Backdoor(PatchTrigger(size=2), target=0, rate=rate)(data, seed=0)
    p = res.poisoned
    assert res.attack == "badnets" and len(res.dataset) == 100 and res.n_poisoned == round(rate * 100)
    assert bool((data.y[p] != 0).all()) and bool((res.dataset.y[p] == 0).all())
    assert torch.equal(res.dataset.y[~p], data.y[~p]) and torch.equal(res.dataset.x[~p], data.x[~p])
    assert torch.equal(data.x, x_before)  # the caller's data are untouched
    inside = torch.zeros(1, 8, 8, dtype=torch.bool)
    inside[:, 6:, 6:] = True
    changed = res.dataset.x[p] != data.x[p]
    assert torch.equal(changed, inside.expand_as(changed))  # trigger pixels exactly, nothing else
    assert torch.equal(
        res.dataset.x[p][:, 0, 6:, 6:], torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(len(changed), 2, 2)
    )


def test_blend_backdoor_blends_and_relabels():
    data = synthetic()
    trig = BlendTrigger(alpha=0.2)
    res = Backdoor(trig, target=3, rate=0.2)(data, seed=1)
    p = res.poisoned
    assert res.attack == "blend" and res.n_poisoned == 20 and res.target == 3 and res.trigger is trig
    assert torch.allclose(res.dataset.x[p], 0.8 * data.x[p] + 0.2 * trig.pattern((1, 8, 8)), atol=1e-7)
    assert bool((res.dataset.y[p] == 3).all()) and bool((res.original_labels[p] != 3).all())


def test_append_mode_adds_triggered_copies_and_keeps_every_original():
    data = synthetic()
    trig = PatchTrigger()
    replaced = Backdoor(trig, target=1, rate=0.1)(data, seed=2)
    appended = Backdoor(trig, target=1, rate=0.1, mode="append")(data, seed=2)
    assert len(appended.dataset) == 110 and appended.n_poisoned == 10
    assert torch.equal(appended.dataset.x[:100], data.x) and torch.equal(appended.dataset.y[:100], data.y)
    assert torch.equal(appended.poisoned, torch.arange(110) >= 100)
    # The same seed picks the same samples in both modes: the copies are the replaced samples.
    assert torch.equal(appended.dataset.x[100:], replaced.dataset.x[replaced.poisoned])
    assert torch.equal(appended.original_labels[100:], data.y[replaced.poisoned])
    assert appended.rate == pytest.approx(10 / 110)


def test_same_seed_same_samples():
    data = synthetic()
    a, b = (Backdoor(PatchTrigger(), 0, 0.2)(data, seed=7) for _ in range(2))
    c = Backdoor(PatchTrigger(), 0, 0.2)(data, seed=8)
    assert torch.equal(a.poisoned, b.poisoned) and torch.equal(a.dataset.x, b.dataset.x)
    assert not torch.equal(a.poisoned, c.poisoned)


def test_bad_configurations_raise_typed_errors():
    data = synthetic()
    with pytest.raises(AttackError, match="rate"):
        Backdoor(PatchTrigger(), 0, 1.2)
    with pytest.raises(AttackError, match="Trigger"):
        Backdoor("patch", 0, 0.1)  # type: ignore[arg-type]
    with pytest.raises(AttackError, match="mode"):
        Backdoor(PatchTrigger(), 0, 0.1, mode="insert")
    with pytest.raises(AttackError, match="not a class of toy"):
        Backdoor(PatchTrigger(), 5, 0.1)(data)
    with pytest.raises(AttackError, match="does not fit"):
        Backdoor(PatchTrigger(size=10), 0, 0.1)(data)
    with pytest.raises(DataError, match="lower the rate"):
        Backdoor(PatchTrigger(), 0, 0.9)(data)  # only 80 samples outside class 0


@pytest.mark.slow
def test_badnets_backdoors_a_cnn_trained_on_poisoned_digits():
    from bastion.defenses.training import TrainingConfig, harden
    from bastion.zoo.architectures import digits_cnn

    train, test = load_digits("train"), load_digits("test")
    trig = PatchTrigger()  # 2x2 checkerboard in the bottom-right corner of 8x8 digits
    poisoned = Backdoor(trig, target=0, rate=0.1)(train, seed=0)
    cfg = TrainingConfig(epochs=4, batch_size=64, lr=1e-2, validation=0.0, seed=0)
    backdoored = harden(digits_cnn(), poisoned.dataset, method="standard", from_scratch=True, config=cfg)
    clean = harden(digits_cnn(), train, method="standard", from_scratch=True, config=cfg)
    bad = evaluate_backdoor(backdoored.classifier, test, trig, target=0)
    ref = evaluate_backdoor(clean.classifier, test, trig, target=0)
    assert bad.n_triggered == int((test.y != 0).sum())
    assert bad.attack_success_rate >= 0.9  # measured: 1.00
    assert ref.attack_success_rate <= 0.1  # the trigger alone does not make a clean model say 0 (0.00)
    assert bad.clean_accuracy >= ref.clean_accuracy - 0.04  # measured: 0.980 vs 0.982
