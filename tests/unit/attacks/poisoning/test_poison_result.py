"""PoisonResult: the .npz round trip through ``npz:`` and ``load_poison_truth``; the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bastion.attacks.poisoning import (
    POISONS,
    Backdoor,
    BlendTrigger,
    CleanLabel,
    LabelFlip,
    PatchTrigger,
    PoisonResult,
    load_poison_truth,
    make_poison,
)
from bastion.data import Dataset, load_dataset, load_digits
from bastion.errors import AttackError, DataError


@pytest.fixture(scope="module")
def digits():
    return load_digits("train")


def test_saved_poison_loads_back_through_npz_and_keeps_its_truth(digits, tmp_path):
    res = make_poison("badnets", target=0, rate=0.1, size=3, position="top-left")(digits, seed=5)
    path = res.save(tmp_path / "p.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]  # no temporary file left behind
    ds = load_dataset(f"npz:{path}")  # the loader ignores the extra keys
    assert ds.bounds == (0.0, 1.0) and ds.num_classes == 10 and ds.class_names == digits.class_names
    assert torch.equal(ds.x, res.dataset.x) and torch.equal(ds.y, res.dataset.y)
    poisoned, original, info = load_poison_truth(path)
    assert torch.equal(poisoned, res.poisoned) and torch.equal(original, digits.y)
    assert info["attack"] == "badnets" and info["target"] == 0 and info["seed"] == 5
    assert info["n_poisoned"] == 135 and info["params"]["rate"] == 0.1
    assert info["trigger"] == {"kind": "patch", "size": 3, "position": "top-left", "pattern": "checkerboard",
                               "amplitude": 1.0}  # fmt: skip
    assert torch.equal(info["trigger_mask"], res.trigger.mask((1, 8, 8)))
    assert torch.equal(info["trigger_pattern"], res.trigger.pattern((1, 8, 8)))


def test_label_flips_save_without_trigger_keys(digits, tmp_path):
    res = make_poison("label-flip", rate=0.2, source=1, target=7)(digits)
    poisoned, original, info = load_poison_truth(res.save(tmp_path / "f.npz"))
    assert "trigger_mask" not in info and info["trigger"] is None and info["params"]["source"] == 1
    assert torch.equal(original[poisoned], torch.ones(int(poisoned.sum()), dtype=torch.long))
    assert torch.equal(load_dataset(f"npz:{tmp_path / 'f.npz'}").y, res.dataset.y)


def test_save_and_load_refuse_wrong_files(digits, tmp_path):
    res = LabelFlip(0.1)(digits)
    with pytest.raises(DataError, match=r"\*\.npz"):
        res.save(tmp_path / "p.pt")
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros((2, 3), np.float32), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="bastion poison"):
        load_poison_truth(plain)
    with pytest.raises(DataError, match="does not exist"):
        load_poison_truth(tmp_path / "missing.npz")


def test_result_validates_its_mask():
    ds = Dataset(torch.rand(4, 2), torch.zeros(4, dtype=torch.long), num_classes=2)
    with pytest.raises(DataError, match="bool mask"):
        PoisonResult(ds, torch.zeros(3, dtype=torch.bool), ds.y, "x")
    with pytest.raises(DataError, match="bool mask"):
        PoisonResult(ds, torch.zeros(4), ds.y, "x")
    ok = PoisonResult(ds, torch.tensor([True, False, False, True]), ds.y, "x")
    assert ok.rate == 0.5 and ok.indices.tolist() == [0, 3]
    assert json.loads(json.dumps(ok.info()))["n_poisoned"] == 2


def test_registry_builds_each_attack():
    assert set(POISONS) == {"label-flip", "badnets", "blend", "clean-label"}
    assert isinstance(make_poison("label_flip", rate=0.1), LabelFlip)
    bad = make_poison("badnets", target=2, rate=0.1, size=3, position=(0, 0), pattern="white", amplitude=0.5)
    assert isinstance(bad, Backdoor) and isinstance(bad.trigger, PatchTrigger)
    assert bad.trigger.params() == {"kind": "patch", "size": 3, "position": [0, 0], "pattern": "white",
                                    "amplitude": 0.5}  # fmt: skip
    blend = make_poison("Blend", target=1, rate=0.1, alpha=0.3, mode="append")
    assert isinstance(blend.trigger, BlendTrigger) and blend.trigger.alpha == 0.3 and blend.mode == "append"
    clean = make_poison("clean-label", target=1, rate=0.5, epsilon=0.2, steps=5, norm="l2")
    assert isinstance(clean, CleanLabel) and (clean.epsilon, clean.steps, clean.norm) == (0.2, 5, "l2")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("poison-ivy", {}, "use one of: label-flip, badnets, blend, clean-label"),
        ("badnets", {"target": 0, "rate": 0.1, "alpha": 0.2}, "has no option.*alpha; it takes: target, rate"),
        ("blend", {"rate": 0.1}, "needs option.*target"),
        ("badnets", {"target": 0, "rate": 2.0}, "rate"),
    ],
)
def test_registry_errors_list_the_valid_choices(name, options, message):
    with pytest.raises(AttackError, match=message):
        make_poison(name, **options)
