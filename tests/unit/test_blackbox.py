"""QueryCounter: exact accounting of rows and calls, and a budget enforced before anything is sent."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.evasion.square import Square
from bastion.blackbox import QueryCounter
from bastion.defenses.output_policy import PolicyClassifier
from bastion.errors import QueryBudgetError
from bastion.threat import ThreatModel


class Spy:
    """A classifier that records the batch sizes it was really sent."""

    def __init__(self, model) -> None:
        self.model, self.bounds, self.sent = model, model.bounds, []

    @property
    def num_classes(self):
        return self.model.num_classes

    def __call__(self, x):
        self.sent.append(int(x.shape[0]))
        return self.model(x)


def test_counts_rows_and_calls_exactly(digits_model, digits_batch):
    x = digits_batch[0]
    spy = Spy(digits_model)
    counter = QueryCounter(spy)
    sizes = [1, 5, 32, 7, 1]
    for n in sizes:
        out = counter(x[:n])
        assert torch.equal(out, digits_model(x[:n]))  # transparent
    assert counter.queries == sum(sizes) == sum(spy.sent)
    assert counter.calls == len(sizes) == len(spy.sent)
    assert counter.num_classes == 10 and counter.bounds == digits_model.bounds
    counter.reset()
    assert (counter.queries, counter.calls) == (0, 0)


def test_budget_refuses_before_sending(digits_model, digits_batch):
    x = digits_batch[0]
    spy = Spy(digits_model)
    counter = QueryCounter(spy, budget=10)
    counter(x[:6])
    assert counter.remaining == 4
    with pytest.raises(QueryBudgetError) as info:
        counter(x[:5])
    assert "6 of 10" in str(info.value) and "\n" not in str(info.value)
    assert spy.sent == [6]  # the refused batch never reached the model
    assert (counter.queries, counter.calls) == (6, 1)
    counter(x[:4])  # exactly up to the budget is allowed
    assert counter.queries == 10 and counter.remaining == 0
    with pytest.raises(QueryBudgetError):
        counter(x[:1])
    counter.reset()
    counter(x[:10])
    assert counter.queries == 10


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_invalid_budget(digits_model, bad):
    with pytest.raises(QueryBudgetError):
        QueryCounter(digits_model, budget=bad)


def test_a_black_box_attack_is_counted_exactly(digits_model, digits_batch):
    # at a negligible epsilon nothing is fooled: Square spends its whole budget on every input, so it
    # sends N (initial check) + N * n_queries rows, and the base class verifies the N results once more;
    # calls: the initial check, the start point, n_queries - 1 steps, the verification
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    counter = QueryCounter(PolicyClassifier(digits_model, "probs"))
    result = Square(n_queries=12)(counter, x, y, ThreatModel("linf", 1e-4))
    assert not result.success.any()
    assert result.queries == len(x) + len(x) * 12
    assert counter.queries == result.queries + len(x)
    assert counter.calls == 1 + 1 + (12 - 1) + 1


def test_a_budget_stops_an_attack(digits_model, digits_batch):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    counter = QueryCounter(digits_model, budget=8 + 8 * 5)
    with pytest.raises(QueryBudgetError):
        Square(n_queries=12)(counter, x, y, ThreatModel("linf", 1e-4))
    assert counter.queries <= 8 + 8 * 5


def test_released_is_what_an_outputs_only_attacker_sees(digits_model, digits_batch):
    x = digits_batch[0][:16].clone().requires_grad_(True)
    counter = QueryCounter(PolicyClassifier(digits_model, "labels"))
    released = counter.released(x)
    assert not released.requires_grad
    assert torch.equal(released.argmax(1), digits_model(x).argmax(1))
    assert torch.allclose(released.sum(1), torch.ones(16))
    assert counter.queries == 16 and counter.calls == 1
