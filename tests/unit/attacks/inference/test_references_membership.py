"""The reference-model runner: a balanced seeded assignment, training through harden, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from bastion.attacks.inference import references as refs_mod
from bastion.attacks.inference.references import (
    Assignment,
    load_references,
    train_reference,
    train_references,
)
from bastion.data import load_dataset
from bastion.defenses.training.config import TrainingConfig
from bastion.errors import DataError

CFG = TrainingConfig(epochs=3, batch_size=32, lr=1e-2)


def _factory() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def _population(n: int = 60):  # type: ignore[no-untyped-def]
    return load_dataset("digits", split="train").subset(slice(0, n))


@pytest.mark.parametrize("n_models", [1, 2, 3, 4, 16])
def test_assignment_balanced(n_models: int) -> None:
    a = Assignment.random(n_models, 1000, seed=3)
    per_example = a.keep.sum(0)
    assert int(per_example.min()) >= n_models // 2 and int(per_example.max()) <= (n_models + 1) // 2
    share = a.keep.double().mean(1)  # each model trains on about half
    assert bool(((share - 0.5).abs() < 0.1).all())
    if n_models % 2 == 0:
        assert bool((per_example == n_models // 2).all())


def test_assignment_seeded_and_round_trips() -> None:
    a, b, c = Assignment.random(8, 50, 1), Assignment.random(8, 50, 1), Assignment.random(8, 50, 2)
    assert torch.equal(a.keep, b.keep) and not torch.equal(a.keep, c.keep)
    back = Assignment.from_dict(json.loads(json.dumps(a.to_dict())))
    assert torch.equal(back.keep, a.keep) and back.seed == 1


def test_train_reference_is_pure_and_trains_on_its_row() -> None:
    pop = _population()
    keep = Assignment.random(2, len(pop), 0).keep[0]
    r1 = train_reference(_factory, pop, keep, seed=5, config=CFG)
    r2 = train_reference(_factory, pop, keep, seed=5, config=CFG)
    for (k, v), w in zip(r1.module.state_dict().items(), r2.module.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    assert r1.card["train_data"]["n"] == int(keep.sum())  # no validation hold-out
    assert r1.card["method"] == "standard"


def test_train_references_saves_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pop = _population()
    first = train_references(_factory, pop, 3, tmp_path, seed=4, config=CFG)
    assert len(first) == 3 and (tmp_path / "assignment.json").is_file()
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "reference-000.safetensors",
        "reference-001.safetensors",
        "reference-002.safetensors",
    ]
    (tmp_path / "reference-001.safetensors").unlink()
    calls: list[int] = []
    real = refs_mod.train_reference

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(refs_mod, "train_reference", counting)
    again = train_references(_factory, pop, 3, tmp_path, seed=4, config=CFG)
    assert calls == [CFG.seed + 1]  # only the missing one
    assert torch.equal(again.assignment.keep, first.assignment.keep)
    x = pop.x[:5]
    for a, b in zip(first.models, again.models, strict=True):
        assert torch.equal(a(x), b(x))
    loaded = load_references(tmp_path, _factory, pop)
    assert torch.equal(loaded.models[2](x), first.models[2](x))


def test_other_assignment_in_folder_refused(tmp_path: Path) -> None:
    pop = _population()
    train_references(_factory, pop, 1, tmp_path, seed=0, config=CFG)
    with pytest.raises(DataError, match="another assignment"):
        train_references(_factory, pop, 1, tmp_path, seed=1, config=CFG)
    other = replace(pop, y=(pop.y + 1) % 10)
    with pytest.raises(DataError, match="another"):
        train_references(_factory, other, 1, tmp_path, seed=0, config=CFG)
    with pytest.raises(DataError, match="another population"):
        load_references(tmp_path, _factory, other)
    with pytest.raises(DataError, match="other settings"):
        train_references(_factory, pop, 1, tmp_path, seed=0, config=replace(CFG, epochs=4))
