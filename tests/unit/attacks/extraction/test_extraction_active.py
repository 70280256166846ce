"""Uncertainty sampling (ActiveThief) and the label-only clone's shift augmentation: exact query
accounting, rounds, choices that concentrate on the victim's boundary, and the shift's geometry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.attacks.extraction import CloneTraining, KnockoffNets
from bastion.attacks.extraction._shift import random_shift, shift_pixels
from bastion.attacks.extraction.active import round_sizes
from bastion.errors import AttackError
from bastion.model import TorchClassifier

FAST = CloneTraining(steps=150, min_epochs=5, batch_size=32, lr=5e-3)


class Recording:
    """A victim that keeps every input it was sent."""

    def __init__(self, model: TorchClassifier) -> None:
        self.model, self.bounds, self.sent = model, model.bounds, []

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sent.append(x.detach().clone())
        return self.model(x)


def diagonal_victim() -> TorchClassifier:
    """Two classes in the unit square split by the diagonal x0 = x1 (confident away from it)."""
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[20.0, -20.0], [-20.0, 20.0]]))
        net.bias.zero_()
    return TorchClassifier(net, bounds=(0.0, 1.0), num_classes=2, name="diagonal")


@pytest.fixture(scope="module")
def square_pool() -> torch.Tensor:
    return torch.rand(3000, 2, generator=torch.Generator().manual_seed(0))


def test_round_sizes_double_up_to_the_budget():
    assert round_sizes(5000, 0.05) == [250, 500, 1000, 2000, 4000, 5000]
    assert round_sizes(10, 0.01) == [1, 2, 4, 8, 10]
    assert round_sizes(100, 1.0) == [100]


@pytest.mark.parametrize("output", ["probs", "labels"])
def test_uncertainty_spends_the_budget_once_on_distinct_inputs(square_pool, output):
    victim = Recording(diagonal_victim())
    atk = KnockoffNets("uncertainty", output, budgets=(60,), training=FAST, initial=0.1)
    result = atk.run(victim, square_pool, 240, seed=0)
    sent = torch.cat(victim.sent)
    assert result.queries == sent.shape[0] == 240
    assert torch.unique(sent, dim=0).shape[0] == 240  # nothing asked twice
    assert [p.budget for p in result.curve] == [60, 240]


def test_uncertainty_asks_near_the_boundary(square_pool):
    """After the random first round, the chosen inputs lie far closer to the victim's boundary than
    random ones (mean |x0 - x1| of uniform points is 1/3)."""
    victim = Recording(diagonal_victim())
    KnockoffNets("uncertainty", "labels", budgets=(), training=FAST, initial=0.25).run(
        victim, square_pool, 200, seed=0
    )
    sent = torch.cat(victim.sent)
    first, chosen = sent[:50], sent[50:]
    distance = lambda x: float((x[:, 0] - x[:, 1]).abs().mean())  # noqa: E731
    assert distance(first) > 0.2
    assert distance(chosen) < 0.4 * distance(first)


def test_uncertainty_is_seeded(square_pool):
    atk = KnockoffNets("uncertainty", "labels", budgets=(), training=FAST, initial=0.25)
    runs = [Recording(diagonal_victim()) for _ in range(3)]
    for r, seed in zip(runs, (4, 4, 5), strict=True):
        atk.run(r, square_pool, 80, seed=seed)
    a, b, c = (torch.cat(r.sent) for r in runs)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_initial_share_is_checked():
    with pytest.raises(AttackError, match="initial"):
        KnockoffNets("uncertainty", initial=0.0)
    with pytest.raises(AttackError, match="shift"):
        CloneTraining(shift=0.5)


def test_shift_pixels_scale_with_the_image():
    assert shift_pixels((1, 28, 28), 0.07) == 2
    assert shift_pixels((3, 32, 32), 0.07) == 2
    assert shift_pixels((1, 8, 8), 0.07) == 0  # under 16 pixels: never shifted
    assert shift_pixels((3, 16, 16), 0.07) == 1
    assert shift_pixels((20,), 0.07) == 0
    assert shift_pixels((1, 28, 28), 0.0) == 0


def test_random_shift_translates_each_image():
    x = torch.rand(16, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    assert random_shift(x, 0, torch.Generator()) is x
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    for i in range(16):
        # the offset that maps the input's interior onto the output exactly, one of the 25 allowed
        hits = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(y[i, :, 2:-2, 2:-2], x[i, :, 2 + dy : 9 - 2 + dy, 2 + dx : 7 - 2 + dx])
        ]
        assert len(hits) == 1
    # the border replicates the edge: no value the image does not hold
    assert all(bool(torch.isin(y[i], x[i]).all()) for i in range(16))
    z = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(y, z)


def test_small_images_are_never_shifted(digits_linear_victim):
    """On 8x8 digits one pixel is an eighth of the image: a linear victim's label-only clone lost 12
    points of fidelity to a one-pixel shift, so images under 16 pixels are left alone."""
    from bastion.data import load_dataset

    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    victim = digits_linear_victim
    clone = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))  # noqa: E731
    training = CloneTraining(steps=200, min_epochs=5, batch_size=32, lr=5e-3)
    kw = {"test": test, "reference": victim, "seed": 0}
    result = KnockoffNets(output="labels", budgets=(), training=training, clone=clone).run(
        victim, train, 400, **kw
    )
    assert result.info["shift_pixels"] == 0
    forced = KnockoffNets(output="labels", budgets=(), training=training, clone=clone)
    # the same run with the shift forced on (through the objective) is the worse clone: the rule matters
    from bastion.attacks.extraction import _training

    original = _training.shift_pixels
    _training.shift_pixels = lambda shape, share: 1  # type: ignore[assignment]
    try:
        shifted = forced.run(victim, train, 400, **kw)
    finally:
        _training.shift_pixels = original
    assert result.fidelity is not None and shifted.fidelity is not None
    assert result.fidelity > shifted.fidelity + 0.05
