"""Backdoor metrics on a model with a known answer: it reads the class from the top-left pixel."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.poisoning import (
    PatchTrigger,
    attack_success_rate,
    clean_accuracy,
    evaluate_backdoor,
)
from bastion.data import Dataset
from bastion.errors import DataError
from bastion.model import TorchClassifier


class PixelReader(nn.Module):
    """Predicts class round(9 * x[:, 0, 0, 0]): a white top-left patch reads as 9, a black one as 0,
    a patch anywhere else is invisible to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = 9 * x[:, 0, 0, 0]
        return -((value[:, None] - torch.arange(10, dtype=x.dtype)) ** 2)


def encoded(n: int = 100) -> Dataset:
    y = torch.arange(n) % 10
    x = 0.5 * torch.ones(n, 1, 8, 8)
    x[:, 0, 0, 0] = y / 9
    return Dataset(x, y, num_classes=10, name="encoded")


@pytest.fixture()
def reader() -> TorchClassifier:
    return TorchClassifier(PixelReader(), num_classes=10)


def test_known_answers(reader):
    data = encoded()
    assert clean_accuracy(reader, data.x, data.y) == 1.0
    to_nine = PatchTrigger(size=2, position="top-left", pattern="white")
    assert attack_success_rate(reader, data.x, data.y, to_nine, target=9) == 1.0
    assert attack_success_rate(reader, data.x, data.y, to_nine, target=3) == 0.0
    # A trigger the model does not see: predictions stay the true labels. Inputs already of the target
    # class are excluded, so the rate is 0, not the 10% share of class 9.
    unseen = PatchTrigger(size=2, position="bottom-right", pattern="white")
    assert attack_success_rate(reader, data.x, data.y, unseen, target=9) == 0.0


def test_batches_and_bare_modules_give_the_same_numbers(reader):
    data = encoded(95)
    trig = PatchTrigger(position="top-left", pattern="black")
    full = attack_success_rate(reader, data.x, data.y, trig, target=0)
    assert full == attack_success_rate(PixelReader(), data.x, data.y, trig, target=0, batch_size=7) == 1.0
    ev = evaluate_backdoor(reader, data, trig, target=0)
    assert (ev.clean_accuracy, ev.attack_success_rate, ev.n_clean, ev.n_triggered) == (1.0, 1.0, 95, 85)
    assert ev.to_dict()["target"] == 0


def test_errors(reader):
    data = encoded(20)
    only_target = data.subset(data.y == 4)
    with pytest.raises(DataError, match="every input is of the target class"):
        attack_success_rate(reader, only_target.x, only_target.y, PatchTrigger(), target=4)
    with pytest.raises(DataError, match="shape"):
        clean_accuracy(reader, data.x, data.y[:5])
    with pytest.raises(DataError, match="outside the model's bounds"):
        clean_accuracy(reader, data.x * 3, data.y)
