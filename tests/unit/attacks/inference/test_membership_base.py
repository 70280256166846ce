"""The membership-attack contract: ``run`` is the base class's alone, checks the targets before any
scoring, seeds the randomness, merges the measured parameters, and refuses unknown context."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from bastion.attacks.inference.base import MembershipAttack, Scored
from bastion.attacks.inference.label_only import BoundaryDistance
from bastion.attacks.inference.lira import LiRA
from bastion.attacks.inference.rmia import RMIA
from bastion.attacks.inference.shadow import ShadowModels
from bastion.attacks.inference.threshold import LossThreshold
from bastion.errors import DataError
from bastion.model import TorchClassifier

ATTACKS = (LossThreshold, ShadowModels, LiRA, RMIA, BoundaryDistance)


class Draw(MembershipAttack):
    """Scores = uniform draws from the generator; records what ``_score`` was given."""

    name = "draw"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def params(self) -> dict[str, Any]:
        return {"kind": "toy", "extra": "from params"}

    def _score(
        self, model: Any, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator, tag: str = ""
    ) -> Scored:
        self.calls.append({"generator": generator, "tag": tag})
        s = torch.rand(x.shape[0], generator=generator, device=generator.device)
        return Scored(s, 2 * x.shape[0], {"extra": "measured", "tag": tag})


@pytest.fixture()
def targets() -> tuple[TorchClassifier, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TorchClassifier(nn.Linear(4, 3), bounds=(0.0, 1.0))
    x = torch.rand(10, 4)
    y = torch.arange(10) % 3
    return model, x, y, torch.arange(10) < 5


def test_no_attack_overrides_run():
    for cls in ATTACKS:
        assert issubclass(cls, MembershipAttack)
        assert cls.run is MembershipAttack.run, cls.__name__


def test_result_merges_params_and_counts_queries(targets):
    model, x, y, m = targets
    r = Draw().run(model, x, y, m, tag="t")
    assert r.attack == "draw" and r.queries == 20
    assert r.params == {"kind": "toy", "extra": "measured", "tag": "t"}  # measured values win
    assert list(r.params) == ["kind", "extra", "tag"]  # hyperparameters keep their place
    assert r.scores.dtype == torch.float64 and r.scores.shape == (10,) and r.seconds >= 0


def test_seed_and_generator(targets):
    model, x, y, m = targets
    a, b, c = (Draw().run(model, x, y, m, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.scores, b.scores) and not torch.equal(a.scores, c.scores)
    default, zero = Draw().run(model, x, y, m), Draw().run(model, x, y, m, seed=0)
    assert torch.equal(default.scores, zero.scores)
    g = torch.Generator().manual_seed(3)
    attack = Draw()
    given = attack.run(model, x, y, m, generator=g, seed=99)  # a generator takes precedence
    assert attack.calls[0]["generator"] is g and torch.equal(given.scores, a.scores)


def test_targets_are_checked_before_scoring(targets):
    model, x, y, m = targets
    attack = Draw()
    with pytest.raises(DataError, match="is_member"):
        attack.run(model, x, y, m.long())
    with pytest.raises(DataError, match="integer labels"):
        attack.run(model, x, y.float(), m)
    assert attack.calls == []


def test_unknown_context_is_a_type_error(targets):
    model, x, y, m = targets
    with pytest.raises(TypeError, match="references"):
        Draw().run(model, x, y, m, references=None)
    with pytest.raises(TypeError, match="references"):
        LossThreshold().run(model, x, y, m, references=None)


def test_default_generator_devices():
    assert LossThreshold.generator_device == "input" and BoundaryDistance.generator_device == "input"
    assert RMIA.generator_device == "cpu"  # z indices over the CPU population: same z on every device
