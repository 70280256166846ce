"""harden refuses an adversarial fine-tune whose inner attack would have no gradient (a saturated
softmax), and ``vanishing_cross_entropy`` measures that condition exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.saturation import vanishing_cross_entropy
from bastion.data.dataset import Dataset
from bastion.defenses.training import TrainingConfig, harden
from bastion.errors import DefenseError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

THREAT = ThreatModel("linf", 0.1, bounds=(0.0, 1.0))


class _Scaled(nn.Module):
    def __init__(self, net: nn.Module, scale: float) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.net(x)


@pytest.fixture()
def train_set(digits_data) -> Dataset:
    x, y, _, _ = digits_data
    return Dataset(x, y, num_classes=10, name="digits-train")


def _model(module: nn.Module, scale: float) -> TorchClassifier:
    return TorchClassifier(_Scaled(module, scale), num_classes=10, bounds=(0.0, 1.0))


def test_the_share_is_zero_at_normal_scale_and_large_when_saturated(digits_mlp_module, digits_data):
    x, y, _, _ = digits_data
    assert vanishing_cross_entropy(_model(digits_mlp_module, 1.0), x[:200], y[:200]) == 0.0
    assert vanishing_cross_entropy(_model(digits_mlp_module, 1000.0), x[:200], y[:200]) > 0.5


def test_a_linear_model_has_the_closed_form_answer():
    # logits = s * (w·x) for two classes: softmax saturates exactly when s * |margin| exceeds ~104
    # (exp underflows float32), independently of the input's dimension.
    w = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    model = TorchClassifier(nn.Linear(2, 2, bias=False), num_classes=2, bounds=(-1e3, 1e3))
    with torch.no_grad():
        model.module.weight.copy_(500.0 * w)
    x = torch.tensor([[1.0, 0.0], [0.01, 0.0], [-1.0, 0.0]])  # margins 1000, 10, 1000 (class 1)
    y = torch.tensor([0, 0, 1])
    assert vanishing_cross_entropy(model, x, y) == pytest.approx(2 / 3)


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs", "atta", "trades"])
def test_harden_refuses_a_saturated_fine_tune(digits_mlp_module, train_set, method):
    with pytest.raises(DefenseError, match=r"no gradient.*--from-scratch"):
        harden(_model(digits_mlp_module, 1000.0), train_set, method, THREAT, epochs=1)


def test_harden_trains_the_same_model_from_scratch_and_standard_training_is_not_checked(
    digits_mlp_module, train_set
):
    saturated = _model(digits_mlp_module, 1000.0)
    cfg = TrainingConfig(epochs=1, validation=0.0)
    assert harden(saturated, train_set, "standard", config=cfg).card
    assert harden(saturated, train_set, "fgsm-rs", THREAT, config=cfg, from_scratch=True).card
