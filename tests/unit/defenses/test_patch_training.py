"""Universal adversarial training against a patch: a freshly fitted patch (another seed, held-out images)
breaks fewer inputs of the patch-trained network than of the same network trained plainly, on two
architectures; clean accuracy holds; wrong use is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.physical import AdversarialPatch, PatchThreat
from bastion.data import load_dataset
from bastion.defenses.training import METHODS, TrainingConfig, harden
from bastion.defenses.training.patch import UniversalPatchTraining
from bastion.errors import DefenseError
from bastion.model import TorchClassifier

AREA = 0.12
CONFIG = TrainingConfig(epochs=12, batch_size=64, lr=3e-3, validation=0.0, seed=0)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 64, 10),
    )  # fmt: skip


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits", split="train"), load_dataset("digits", split="test")


def _patch_error(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(clean accuracy, share of correct held-out inputs a patch fitted on the other half breaks)."""
    clf = TorchClassifier(module, bounds=(0.0, 1.0), num_classes=10)
    with torch.no_grad():
        clean = float((clf(x).argmax(1) == y).float().mean())
    threat = PatchThreat(area=AREA)
    half = x.shape[0] // 2
    fitted = AdversarialPatch(steps=150, batch_size=64, step_size=0.05).fit(
        clf, x[:half], threat, y=y[:half], seed=7
    )
    score = fitted.evaluate(clf, x[half:], y[half:], draws=4, seed=3)
    return clean, score.success_rate


@pytest.mark.parametrize("build", [_cnn, _mlp], ids=["cnn", "mlp"])
def test_patch_training_makes_a_fresh_patch_weaker(build, splits) -> None:
    train, test = splits
    x, y = test.x, test.y
    plain = harden(build(), train, "standard", config=CONFIG).module
    trained = harden(build(), train, "patch", config=CONFIG, area=AREA).module
    plain_clean, plain_broken = _patch_error(plain, x, y)
    patch_clean, patch_broken = _patch_error(trained, x, y)
    assert plain_broken > 0.15  # the patch is a real threat to the plain network
    # measured here: cnn 20% -> 10.5%, mlp 23.7% -> 13.3% of held-out inputs broken
    assert patch_broken < 0.7 * plain_broken, (plain_broken, patch_broken, plain_clean, patch_clean)
    assert patch_clean > plain_clean - 0.06 and patch_clean > 0.85


def test_the_objective_keeps_its_patch_in_bounds_and_refuses_wrong_use() -> None:
    assert METHODS["patch"] is UniversalPatchTraining
    with pytest.raises(DefenseError, match="clean_weight"):
        UniversalPatchTraining(clean_weight=1.0)
    with pytest.raises(Exception, match="area"):
        UniversalPatchTraining(area=0.9)
    train = load_dataset("digits", split="train").take(256, seed=0)
    obj = UniversalPatchTraining(area=0.1, patch_step=0.5)
    res = harden(
        _cnn(), train, obj.name, config=TrainingConfig(epochs=1, batch_size=64, validation=0.0), area=0.1
    )
    assert res.card["method"] == "patch" and res.card["method_options"]["area"] == 0.1
    flat = load_dataset("digits", split="train").take(64, seed=0)
    with pytest.raises(DefenseError, match="image batches"):
        from bastion.defenses.training.objective import Batch

        obj.loss(lambda t: t, lambda t: t, Batch(flat.x.flatten(1), flat.y, None, torch.Generator(), 0.0))
