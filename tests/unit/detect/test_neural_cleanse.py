"""Neural Cleanse on BadNets-backdoored and clean digits CNNs: the target and only the target flagged,
nothing flagged on the clean model, the reversed mask on the trigger corner, the MAD test by hand,
shapes, bounds, seeds, no mutation, typed errors, the trigger PNG."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bastion.data import load_digits
from bastion.data.dataset import Dataset
from bastion.defenses.training import HardenResult, harden
from bastion.defenses.training.config import TrainingConfig
from bastion.detect.base import DetectorError
from bastion.detect.model_scan import ModelScanResult, anomaly_index, flag_outliers, save_trigger_images
from bastion.detect.neural_cleanse import NeuralCleanse
from bastion.errors import DataError
from bastion.model import TorchClassifier
from bastion.zoo.architectures import digits_cnn

TARGET = 0
# A CPU-sized scan for the tests: 200 steps of 16 inputs per class (the default is 300).
FAST = {"steps": 200, "batch_size": 16}


def train(data: Dataset) -> HardenResult:
    """A digits CNN trained from scratch on ``data``, seeded: the same recipe for both models."""
    cfg = TrainingConfig(epochs=10, validation=0.0, seed=0)
    return harden(digits_cnn(), data, method="standard", from_scratch=True, config=cfg)


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    return load_digits("train"), load_digits("test")


@pytest.fixture(scope="module")
def backdoored(backdoored_digits) -> TorchClassifier:
    return backdoored_digits.model


@pytest.fixture(scope="module")
def stamp(backdoored_digits):
    """The BadNets trigger the model was trained with: a white 2x2 patch in the bottom-right corner."""
    return backdoored_digits.trigger.apply


@pytest.fixture(scope="module")
def bd_scan(backdoored, digits) -> ModelScanResult:
    return NeuralCleanse(**FAST).scan(backdoored, digits[1].x[:200])


@pytest.fixture(scope="module")
def clean_scan(digits) -> ModelScanResult:
    return NeuralCleanse(**FAST).scan(train(digits[0]).classifier, digits[1].x[:200])


def test_the_backdoor_works(backdoored, digits, stamp):
    test = digits[1]
    with torch.no_grad():
        clean_acc = (backdoored(test.x).argmax(1) == test.y).float().mean()
        hit = (backdoored(stamp(test.x[test.y != TARGET])).argmax(1) == TARGET).float().mean()
    assert clean_acc > 0.9 and hit > 0.9, (clean_acc, hit)


def test_flags_the_target_and_only_the_target(bd_scan):
    assert bd_scan.flagged == (TARGET,), bd_scan.to_dict()
    assert bd_scan.suspected
    assert float(bd_scan.anomaly_index[TARGET]) > 2.0
    others = torch.ones(10, dtype=torch.bool)
    others[TARGET] = False
    # The target's trigger is far smaller than any other class's (the 2x2 patch has L1 4).
    assert float(bd_scan.mask_l1[TARGET]) < 0.6 * float(bd_scan.mask_l1[others].min())


def test_flags_nothing_on_the_clean_model(clean_scan):
    assert clean_scan.flagged == () and not clean_scan.suspected, clean_scan.to_dict()


def test_the_reversed_trigger_is_the_corner_patch_and_works(bd_scan, backdoored, digits):
    mask, pattern = bd_scan.mask[TARGET, 0], bd_scan.pattern[TARGET, 0]
    assert float(mask[-2:, -2:].sum() / mask.sum()) > 0.6  # most of the mask on the 4 trigger pixels
    assert float(pattern[-2:, -2:].mean()) > 0.8  # painted white there
    x = digits[1].x[200:]  # inputs the scan never saw
    with torch.no_grad():
        hit = (backdoored((1 - mask) * x + mask * pattern).argmax(1) == TARGET).float().mean()
    assert hit > 0.9 and float(bd_scan.attack_success[TARGET]) > 0.9


def test_shapes_bounds_and_json(bd_scan):
    r = bd_scan
    assert r.mask.shape == (10, 1, 8, 8) and r.pattern.shape == (10, 1, 8, 8)
    assert r.mask_l1.shape == r.attack_success.shape == r.anomaly_index.shape == (10,)
    assert bool((r.mask >= 0).all() and (r.mask <= 1).all())
    assert bool((r.pattern >= 0).all() and (r.pattern <= 1).all())
    torch.testing.assert_close(r.mask_l1, r.mask.flatten(1).sum(1).double())
    torch.testing.assert_close(r.anomaly_index, anomaly_index(r.mask_l1))
    assert bool((r.attack_success >= 0).all() and (r.attack_success <= 1).all())
    payload = json.loads(json.dumps(r.to_dict()))
    assert payload["flagged"] == [TARGET] and len(payload["classes"]) == 10
    assert payload["params"]["steps"] == 200 and payload["classes"][TARGET]["flagged"]


def test_anomaly_index_and_flags_by_hand():
    l1 = torch.tensor([1.0, 10.0, 11.0, 12.0, 13.0, 30.0])
    # median 11.5; deviations 10.5 1.5 .5 .5 1.5 18.5; MAD 1.5 (the mean of the middle two)
    torch.testing.assert_close(
        anomaly_index(l1),
        torch.tensor([10.5, 1.5, 0.5, 0.5, 1.5, 18.5], dtype=torch.float64) / (1.4826 * 1.5),
    )
    assert flag_outliers(l1) == (0,)  # 30 is an outlier too, but above the median: no backdoor
    assert flag_outliers(torch.tensor([1.0, 2.0, 10.0, 11.0, 12.0, 13.0, 30.0]), 2.0) == (0, 1)
    assert flag_outliers(l1, threshold=100.0) == ()
    same = anomaly_index(torch.tensor([5.0, 5.0, 5.0, 1.0]))
    assert same[:3].tolist() == [0.0, 0.0, 0.0] and same[3] == float("inf")
    with pytest.raises(DetectorError):
        anomaly_index(torch.tensor([1.0]))


def test_seeded_and_nothing_mutated(backdoored, digits):
    x = digits[1].x[:40]
    before = x.clone()
    params = {k: v.clone() for k, v in backdoored.module.state_dict().items()}
    a = NeuralCleanse(steps=12, batch_size=4, seed=1).scan(backdoored, x)
    b = NeuralCleanse(steps=12, batch_size=4, seed=1).scan(backdoored, x)
    c = NeuralCleanse(steps=12, batch_size=4, seed=2).scan(backdoored, x)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.pattern, b.pattern)
    assert not torch.equal(a.mask, c.mask)
    assert torch.equal(x, before)
    for k, v in backdoored.module.state_dict().items():
        assert torch.equal(v, params[k])
    assert all(p.grad is None and not p.requires_grad for p in backdoored.module.parameters())
    assert not backdoored.module.training


def test_pattern_inside_other_bounds_and_progress():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    model = TorchClassifier(module, bounds=(-1.0, 1.0), num_classes=5)
    x = 2 * torch.rand(30, 3, 6, 6, generator=torch.Generator().manual_seed(0)) - 1
    seen: list[tuple[int, int]] = []
    r = NeuralCleanse(steps=7, batch_size=4).scan(model, x, progress=lambda s, n: seen.append((s, n)))
    assert r.mask.shape == (5, 1, 6, 6) and r.pattern.shape == (5, 3, 6, 6)
    assert bool((r.pattern >= -1).all() and (r.pattern <= 1).all()) and float(r.pattern.min()) < 0
    assert r.bounds == (-1.0, 1.0) and seen[-1] == (7, 7) and len(seen) == 7


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": 0},
        {"steps": 2.5},
        {"lr": -1},
        {"init_cost": 0},
        {"batch_size": True},
        {"attack_success_threshold": 1.5},
        {"cost_multiplier": 1.0},
        {"anomaly_threshold": 0},
        {"patience": 0},
        {"seed": "0"},
    ],
)
def test_bad_hyperparameters(bad):
    with pytest.raises(DetectorError):
        NeuralCleanse(**bad)


def test_bad_inputs(backdoored):
    with pytest.raises(DetectorError, match="image models"):
        NeuralCleanse(steps=1).scan(nn.Linear(4, 3), torch.rand(5, 4))
    with pytest.raises(DetectorError, match="3 or more classes"):
        NeuralCleanse(steps=1).scan(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.rand(5, 1, 2, 2))
    with pytest.raises(DataError, match="bounds"):
        NeuralCleanse(steps=1).scan(backdoored, torch.full((2, 1, 8, 8), 2.0))


def test_result_validates_shapes(bd_scan):
    from dataclasses import replace

    with pytest.raises(DetectorError, match="pattern"):
        replace(bd_scan, pattern=bd_scan.pattern[:3])
    with pytest.raises(DetectorError, match="flagged"):
        replace(bd_scan, flagged=(10,))


def test_json_stays_valid_when_mad_is_zero(bd_scan):
    from dataclasses import replace

    index = bd_scan.anomaly_index.clone()
    index[2] = float("inf")  # more than half the masks of equal norm: MAD 0
    rows = replace(bd_scan, anomaly_index=index).to_dict()["classes"]
    assert rows[2]["anomaly_index"] == 1e9
    json.dumps(rows, allow_nan=False)


def test_trigger_png(bd_scan, tmp_path):
    import matplotlib.image

    path = save_trigger_images(bd_scan, tmp_path / "sub" / "triggers.png", class_names=list("abcdefghij"))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).ndim == 3
    assert [p.name for p in path.parent.iterdir()] == ["triggers.png"]  # no temporary file left
    with pytest.raises(DetectorError, match="class names"):
        save_trigger_images(bd_scan, tmp_path / "t.png", class_names=["a"])
