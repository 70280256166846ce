"""Label flipping: exact counts, labels changed only where ``poisoned`` says, targeted pools, seeds."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.poisoning import LabelFlip
from bastion.data import Dataset
from bastion.errors import AttackError, DataError


def synthetic(n: int = 200, k: int = 4, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % k, num_classes=k, name="toy")


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.37, 1.0])
def test_random_flip_changes_exactly_round_rate_n_labels(rate):
    data = synthetic()
    y_before = data.y.clone()
    res = LabelFlip(rate)(data, seed=0)
    assert res.n_poisoned == round(rate * 200)
    assert torch.equal(res.dataset.y != data.y, res.poisoned)  # changed exactly where marked, never same
    assert torch.equal(res.original_labels, data.y) and torch.equal(data.y, y_before)
    assert res.dataset.x is data.x  # inputs shared, never modified
    assert res.target is None and res.trigger is None and res.attack == "label-flip"
    assert res.rate == pytest.approx(round(rate * 200) / 200)


def test_random_flips_reach_every_other_class():
    data = synthetic(n=400, k=3)
    res = LabelFlip(1.0)(data, seed=1)
    for c in range(3):
        new = res.dataset.y[data.y == c]
        assert c not in new.tolist() and set(new.tolist()) == {0, 1, 2} - {c}


def test_targeted_flip_touches_only_the_source_class():
    data = synthetic()  # 50 samples per class
    res = LabelFlip(0.3, source=1, target=3)(data, seed=0)
    assert res.n_poisoned == 15
    assert bool((data.y[res.poisoned] == 1).all()) and bool((res.dataset.y[res.poisoned] == 3).all())
    assert res.target == 3 and res.params == {"rate": 0.3, "source": 1, "target": 3}


def test_target_only_and_source_only_pools():
    data = synthetic()
    to_two = LabelFlip(0.1, target=2)(data, seed=0)
    assert to_two.n_poisoned == 15  # 10% of the 150 samples outside class 2
    assert bool((data.y[to_two.poisoned] != 2).all()) and bool((to_two.dataset.y[to_two.poisoned] == 2).all())
    from_zero = LabelFlip(0.5, source=0)(data, seed=0)
    assert from_zero.n_poisoned == 25 and bool((data.y[from_zero.poisoned] == 0).all())
    assert bool((from_zero.dataset.y[from_zero.poisoned] != 0).all())


def test_same_seed_same_flips_other_seed_others():
    data = synthetic()
    a, b, c = (LabelFlip(0.2)(data, seed=s) for s in (4, 4, 5))
    assert torch.equal(a.poisoned, b.poisoned) and torch.equal(a.dataset.y, b.dataset.y)
    assert not torch.equal(a.poisoned, c.poisoned)
    assert a.seed == 4 and c.seed == 5


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "0.1", True])
def test_bad_rates_raise(rate):
    with pytest.raises(AttackError, match="rate"):
        LabelFlip(rate)


def test_bad_classes_and_data_raise():
    with pytest.raises(AttackError, match="both class"):
        LabelFlip(0.1, source=2, target=2)
    with pytest.raises(AttackError, match="class index"):
        LabelFlip(0.1, target=-1)
    with pytest.raises(AttackError, match="not a class of toy"):
        LabelFlip(0.1, target=4)(synthetic())
    one_class = Dataset(torch.rand(5, 3), torch.zeros(5, dtype=torch.long), num_classes=1)
    with pytest.raises(DataError, match="single class"):
        LabelFlip(0.5)(one_class)
    with pytest.raises(DataError, match="Dataset"):
        LabelFlip(0.5)(torch.rand(5, 3))  # type: ignore[arg-type]
