"""Clean-label backdoor (Turner et al. 2019): labels untouched, only the target class poisoned, the PGD
perturbation within epsilon before the trigger, and the perturbation real (it hurts the surrogate)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.poisoning import CleanLabel, PatchTrigger
from bastion.data import load_digits
from bastion.errors import AttackError, DataError, ModelContractError
from bastion.threat import ThreatModel


@pytest.fixture(scope="module")
def digits():
    return load_digits("train")


@pytest.fixture(scope="module")
def surrogate():
    """The zoo's digits CNN (shipped weights: no training in the test)."""
    from bastion.loading import load_model

    return load_model("zoo:digits-cnn")


def test_poisons_only_the_target_class_and_keeps_every_label(digits, surrogate):
    res = CleanLabel(PatchTrigger(), target=3, rate=0.5, epsilon=0.1, steps=10)(digits, model=surrogate)
    n_target = int((digits.y == 3).sum())
    assert res.attack == "clean-label" and res.n_poisoned == round(0.5 * n_target)
    assert bool((digits.y[res.poisoned] == 3).all())
    assert torch.equal(res.dataset.y, digits.y) and torch.equal(res.original_labels, digits.y)
    assert torch.equal(res.dataset.x[~res.poisoned], digits.x[~res.poisoned])


def test_perturbation_is_within_epsilon_before_the_trigger(digits, surrogate):
    eps = 0.1
    res = CleanLabel(PatchTrigger(size=2), target=3, rate=1.0, epsilon=eps, steps=10)(digits, model=surrogate)
    x0, x1 = digits.x[res.poisoned], res.dataset.x[res.poisoned]
    outside = torch.ones(1, 8, 8, dtype=torch.bool)
    outside[:, 6:, 6:] = False
    delta = (x1 - x0)[:, outside]
    assert float(delta.abs().max()) <= eps + 1e-6 and float(delta.abs().max()) > eps / 2
    assert torch.equal(x1[:, 0, 6:, 6:], torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(len(x1), 2, 2))
    assert float(x1.min()) >= 0.0 and float(x1.max()) <= 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturb_maximises_the_surrogates_loss_inside_the_ball(digits, surrogate, norm):
    eps = {"linf": 0.2, "l2": 1.0}[norm]
    x, y = digits.x[:64], digits.y[:64]
    threat = ThreatModel(norm, eps)
    attack = CleanLabel(PatchTrigger(), target=0, rate=1.0, epsilon=eps, steps=20, norm=norm)
    x_adv = attack.perturb(surrogate, x, y, seed=0)
    x_evasion = PGD(steps=20)(surrogate, x, y, threat).x_adv  # stops at the first misclassified iterate
    assert bool(threat.contains(x, x_adv).all())
    with torch.no_grad():
        before, after, evasion = (
            F.cross_entropy(surrogate(v), y, reduction="none") for v in (x, x_adv, x_evasion)
        )
        still_right = (surrogate(x_adv).argmax(1) == y).float().mean()
    assert bool((after > before).all()) and float(still_right) < 0.1
    # All steps for every sample: far harder to learn than a barely-misclassified evasion example
    # (measured on the zoo CNN: mean loss 9.0 vs 1.4 at linf 0.2; 8.5 vs 1.2 at l2 1.0).
    assert float(after.mean()) > 3 * float(evasion.mean())


def test_same_seed_same_poison(digits, surrogate):
    attack = CleanLabel(PatchTrigger(), target=1, rate=0.2, epsilon=0.1, steps=5)
    a, b = attack(digits, seed=3, model=surrogate), attack(digits, seed=3, model=surrogate)
    c = attack(digits, seed=4, model=surrogate)
    assert torch.equal(a.dataset.x, b.dataset.x) and torch.equal(a.poisoned, b.poisoned)
    assert not torch.equal(a.poisoned, c.poisoned)


def test_the_callers_model_is_not_touched(digits):
    from bastion.zoo.architectures import digits_cnn

    module = digits_cnn().train()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    CleanLabel(PatchTrigger(), target=1, rate=0.1, steps=2)(digits, model=module)
    assert module.training and all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    assert all(p.grad is None for p in module.parameters())


def test_bad_inputs_raise_typed_errors(digits, surrogate):
    with pytest.raises(AttackError, match="surrogate"):
        CleanLabel(PatchTrigger(), 0, 0.1)(digits)
    with pytest.raises(AttackError, match="epsilon"):
        CleanLabel(PatchTrigger(), 0, 0.1, epsilon=-1.0)
    with pytest.raises(AttackError, match="norm"):
        CleanLabel(PatchTrigger(), 0, 0.1, norm="l7")
    with pytest.raises(AttackError, match="steps"):
        CleanLabel(PatchTrigger(), 0, 0.1, steps=0)
    with pytest.raises(AttackError, match="not a class"):
        CleanLabel(PatchTrigger(), 12, 0.1)(digits, model=surrogate)
    with pytest.raises(DataError, match="no sample of the target class"):
        CleanLabel(PatchTrigger(), 0, 0.1)(digits.subset(digits.y != 0), model=surrogate)
    five = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with pytest.raises(ModelContractError, match="5 classes"):
        CleanLabel(PatchTrigger(), 0, 0.1)(digits, model=five)


@pytest.mark.slow
def test_adversarial_perturbations_make_the_clean_label_backdoor_learnable(digits, surrogate):
    """Turner et al.'s point: triggered target-class samples with their true labels teach little, unless
    PGD first makes their content hard to learn (measured ASR 0.2% at epsilon ~0, 38% at linf 0.2)."""
    from bastion.attacks.poisoning import evaluate_backdoor
    from bastion.defenses.training import TrainingConfig, harden
    from bastion.zoo.architectures import digits_cnn

    trigger, test = PatchTrigger(), load_digits("test")
    cfg = TrainingConfig(epochs=4, batch_size=64, lr=1e-2, validation=0.0, seed=0)
    asr = {}
    for eps in (1e-4, 0.2):
        poisoned = CleanLabel(trigger, target=0, rate=1.0, epsilon=eps, steps=20)(digits, model=surrogate)
        model = harden(digits_cnn(), poisoned.dataset, method="standard", from_scratch=True, config=cfg)
        asr[eps] = evaluate_backdoor(model.classifier, test, trigger, target=0).attack_success_rate
    assert asr[1e-4] < 0.05 and asr[0.2] > 0.2
