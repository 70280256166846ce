"""Attribute inference: beats the no-model baseline when the model uses the attribute, equals it otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.inference.attribute import (
    AttributeInference,
    attribute_leak,
    attribute_score,
    baseline_scores,
    candidate_index,
)
from bastion.errors import AttackError
from bastion.model import TorchClassifier


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (n, 4): column 0 is the binary sensitive attribute (30% ones), independent of the others;
    the label is decided by it (and weakly by column 1)."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(n, generator=g) < 0.3).float()
    other = torch.randn(n, 3, generator=g)
    y = ((2.5 * s + 0.3 * other[:, 0] - 1.2 + 0.3 * torch.randn(n, generator=g)) > 0).long()
    return torch.cat([s[:, None], other], 1), y


class Fixed(nn.Module):
    def __init__(self, weight_on_sensitive: float) -> None:
        super().__init__()
        self.w = weight_on_sensitive

    def forward(self, x):
        z = self.w * x[:, 0] + 0.3 * x[:, 1] - 1.2
        return torch.stack([-z, z], 1)


class Counting:
    def __init__(self, model):
        self.model, self.bounds, self.num_classes, self.rows = model, model.bounds, model.num_classes, 0

    def __call__(self, x):
        self.rows += x.shape[0]
        return self.model(x)


def test_beats_the_baseline_when_the_model_uses_the_attribute():
    baseline = "prior"
    x, y = synthetic(600, 0)
    aux = synthetic(600, 1)
    model = Counting(TorchClassifier(Fixed(2.5), bounds=(-5.0, 5.0)))
    attack = AttributeInference([0], torch.tensor([[0.0], [1.0]]))
    leak = attribute_leak(attack, model, x, y, aux, baseline=baseline)
    assert leak.queries == model.rows == 2 * 600
    assert leak.attack.accuracy > leak.baseline.accuracy + 0.1
    assert leak.attack.auc > leak.baseline.auc + 0.1 and leak.attack.auc > 0.8
    assert leak.accuracy_gain == pytest.approx(leak.attack.accuracy - leak.baseline.accuracy)
    # Knowing the label, a classifier on the other features and the label already infers s here (the
    # label is decided by s in the population too): the model then adds nothing the population did not
    # reveal, and the attack with that prior is no better (Yeom et al.'s point about attribute inference).
    informed = attribute_leak(attack, model, x, y, aux, baseline="classifier")
    assert informed.baseline.accuracy > 0.9
    assert abs(informed.accuracy_gain) < 0.03


@pytest.mark.parametrize("use", ["scores", "labels"])
def test_equals_the_baseline_when_the_model_ignores_the_attribute(use):
    x, y = synthetic(400, 2)
    model = TorchClassifier(Fixed(0.0), bounds=(-5.0, 5.0))
    attack = AttributeInference([0], torch.tensor([0.0, 1.0]), use=use)
    for baseline in ("prior", "classifier"):
        leak = attribute_leak(attack, model, x, y, synthetic(400, 3), baseline=baseline)
        assert leak.attack == leak.baseline
    prior_leak = attribute_leak(attack, model, x, y, synthetic(400, 3), baseline="prior")
    assert prior_leak.baseline.auc == 0.5  # a constant score
    assert prior_leak.baseline.accuracy == pytest.approx(float((x[:, 0] == 0).float().mean()))


def test_scores_known_answer_and_labels_mode():
    # p(y=1 | s) = sigmoid(2 z) with z = 2.5 s - 1.2 (other columns zero)
    model = TorchClassifier(Fixed(2.5), bounds=(-5.0, 5.0))
    x = torch.zeros(2, 4)
    y = torch.tensor([1, 0])
    res = AttributeInference([0], torch.tensor([0.0, 1.0])).run(model, x, y, prior=torch.tensor([0.7, 0.3]))
    p1 = torch.sigmoid(torch.tensor([2 * -1.2, 2 * 1.3], dtype=torch.float64))  # p(y=1) for s = 0, 1
    expected = torch.stack([torch.tensor([0.7, 0.3]) * p1, torch.tensor([0.7, 0.3]) * (1 - p1)])
    torch.testing.assert_close(res.scores, expected / expected.sum(1, keepdim=True))
    assert res.predicted.tolist() == [1, 0] and res.queries == 4
    lab = AttributeInference([0], torch.tensor([0.0, 1.0]), use="labels").run(model, x, y)
    assert lab.scores.tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_one_hot_group_and_helpers():
    x = torch.tensor([[1.0, 0.0, 0.0, 5.0], [0.0, 0.0, 1.0, 6.0]])
    candidates = torch.eye(3)
    assert candidate_index(x, [0, 1, 2], candidates).tolist() == [0, 2]
    s = attribute_score(torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]), torch.tensor([0, 2]))
    assert s.accuracy == 1.0 and s.auc == 1.0
    base = baseline_scores(
        "prior", (x, torch.tensor([0, 1]), torch.tensor([0, 0])), x, torch.tensor([0, 1]), [0, 1, 2], 3
    )
    torch.testing.assert_close(base[0], torch.tensor([3 / 5, 1 / 5, 1 / 5], dtype=torch.float64))
    with pytest.raises(AttackError, match="candidates"):
        AttributeInference([0, 1], torch.eye(3)).run(
            TorchClassifier(Fixed(1.0)), torch.zeros(1, 4), torch.tensor([0])
        )
    with pytest.raises(AttackError, match="baseline"):
        baseline_scores(
            "knn", (x, torch.tensor([0, 1]), torch.tensor([0, 0])), x, torch.tensor([0, 1]), [0], 2
        )


class Xor(nn.Module):
    """y = s XOR (x1 > 0), smoothly: a model that encodes an interaction a linear baseline cannot learn."""

    def forward(self, x):
        z = 8 * (x[:, 0] - 0.5) * torch.tanh(4 * x[:, 1])
        return torch.stack([z, -z], 1)


def test_beats_the_classifier_baseline_when_the_model_knows_more():
    def rows(n, seed):
        g = torch.Generator().manual_seed(seed)
        s = (torch.rand(n, generator=g) < 0.5).float()
        other = torch.randn(n, 3, generator=g)
        y = (s.bool() ^ (other[:, 0] > 0)).long()
        return torch.cat([s[:, None], other], 1), y

    x, y = rows(500, 0)
    leak = attribute_leak(
        AttributeInference([0], torch.tensor([0.0, 1.0])),
        TorchClassifier(Xor(), bounds=(-5.0, 5.0)),
        x,
        y,
        rows(500, 1),
        baseline="classifier",
    )
    assert leak.baseline.accuracy < 0.65 and leak.attack.accuracy > 0.9 and leak.attack.auc > 0.9
