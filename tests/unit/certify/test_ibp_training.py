"""IBP training follows the same rules as the certifier: a network IBP cannot follow is refused by
name before the first step; a classifier's own normalisation is trained through."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.certify import IntervalBoundPropagation
from bastion.data.dataset import Dataset
from bastion.defenses.training import TrainingConfig, harden
from bastion.defenses.training.ibp import IBPTraining
from bastion.errors import CertificationError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

CFG = TrainingConfig(epochs=2, batch_size=64, lr=3e-3, epsilon_ramp=1, validation=0.0)


@pytest.fixture()
def train(digits_data) -> Dataset:
    x, y, _, _ = digits_data
    return Dataset(x=x, y=y, num_classes=10, name="digits-train")


def _hooked() -> nn.Module:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    net[2].register_forward_hook(lambda m, args, out: out * 2)
    return net


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_hooked, r"layer '2' \(ReLU\): it has a forward hook"),
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Linear(32, 10)),
         r"IBP training cannot bound layer '2' \(BatchNorm1d\)"),
        (lambda: nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 10)),
         r"IBP training cannot bound layer '1' \(Dropout\)"),
    ],
)  # fmt: skip
def test_harden_refuses_before_the_first_step(make, match, train, monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("IBP training took a step on a network it cannot bound")

    monkeypatch.setattr(IBPTraining, "loss", never)
    with pytest.raises(CertificationError, match=match):
        harden(make(), train, "ibp", ThreatModel("linf", 0.1), config=CFG)


def test_ibp_training_goes_through_the_classifiers_normalisation(train, digits_data) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model = TorchClassifier(net, mean=0.3, std=0.4)
    hardened = harden(model, train, "ibp", ThreatModel("linf", 0.05), config=CFG).classifier
    assert hardened.mean is not None and float(hardened.std) == pytest.approx(0.4)
    _, _, x, y = digits_data
    result = IntervalBoundPropagation().certify(hardened, x, ThreatModel("linf", 0.01))
    assert result.certified_accuracy(y, 0.01) > 0.3  # two epochs already make it verifiable at 0.01
