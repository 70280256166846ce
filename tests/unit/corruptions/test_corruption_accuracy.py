"""corruption_accuracy on the built-in digits CNN (8x8 greyscale digits, 200 test images)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from bastion import zoo
from bastion.corruptions import CorruptionReport, CorruptionThreat, corruption_accuracy
from bastion.corruptions.evaluate import corruption_seed
from bastion.data import load_dataset
from bastion.errors import DataError, ThreatModelError

FALLING = ["impulse_noise", "gaussian_blur", "defocus_blur"]
NOISE = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


@pytest.fixture(scope="module")
def setup():
    model = zoo.load("digits-cnn")
    data = load_dataset("digits", split="test").take(200, seed=0)
    return model, data.x, data.y


@pytest.fixture(scope="module")
def report(setup) -> CorruptionReport:
    model, x, y = setup
    return corruption_accuracy(model, x, y, seed=0)


def test_default_runs_every_applicable_corruption_and_skips_saturate(report) -> None:
    assert set(report.per_corruption) >= {*NOISE, "gaussian_blur", "defocus_blur", "contrast", "pixelate"}
    assert "saturate" in report.skipped and "saturate" not in report.per_corruption
    assert len(report.rows) == 5 * len(report.per_corruption)
    assert report.n == 200 and report.bounds == (0.0, 1.0)


def test_clean_accuracy_is_the_models_accuracy(setup, report) -> None:
    model, x, y = setup
    with torch.no_grad():
        correct = int((model(x).argmax(dim=1) == y).sum())
    assert report.clean_accuracy == correct / 200
    assert report.clean_accuracy > 0.9


def test_rows_and_means_are_consistent(report) -> None:
    for row in report.rows:
        assert 0.0 <= row.accuracy <= 1.0
        assert row.accuracy * 200 == pytest.approx(round(row.accuracy * 200))  # a count of 200
    for name, mean in report.per_corruption.items():
        accs = [report.accuracy(name, s) for s in (1, 2, 3, 4, 5)]
        assert mean == pytest.approx(sum(accs) / 5)
    assert report.mean_accuracy == pytest.approx(
        sum(report.per_corruption.values()) / len(report.per_corruption)
    )
    d = json.loads(json.dumps(report.to_dict()))
    assert d["clean_accuracy"] == report.clean_accuracy and len(d["rows"]) == len(report.rows)
    assert d["skipped"].keys() == report.skipped.keys()


@pytest.mark.parametrize("name", FALLING)
def test_accuracy_falls_with_severity(report, name: str) -> None:
    accs = [report.accuracy(name, s) for s in (1, 2, 3, 4, 5)]
    assert all(b <= a for a, b in itertools.pairwise(accs)), accs
    assert accs[-1] < report.clean_accuracy


def test_noise_at_severity_five_costs_accuracy(report) -> None:
    # Gaussian, shot and speckle noise at CIFAR-10-C strength move only a few of 200 digits each; as a
    # family, severity 5 is clearly below clean and below severity 1
    sev1 = sum(report.accuracy(n, 1) for n in NOISE) / len(NOISE)
    sev5 = sum(report.accuracy(n, 5) for n in NOISE) / len(NOISE)
    assert sev5 < sev1 <= report.clean_accuracy
    assert sev5 < report.clean_accuracy - 0.01


def test_determinism_by_seed_and_independence_of_order(setup, report) -> None:
    model, x, y = setup
    names = ["motion_blur", "gaussian_noise", "fog"]
    again = corruption_accuracy(model, x, y, names, seed=0)
    reordered = corruption_accuracy(model, x, y, list(reversed(names)), severities=(5, 3), seed=0)
    for name in names:
        for s in (3, 5):
            assert again.accuracy(name, s) == report.accuracy(name, s)
            assert reordered.accuracy(name, s) == report.accuracy(name, s)
    other = corruption_accuracy(model, x, y, names, seed=1)
    assert [r.accuracy for r in other.rows] != [r.accuracy for r in again.rows]
    assert corruption_seed(0, "fog", 3) != corruption_seed(1, "fog", 3) != corruption_seed(0, "fog", 4)


def test_threat_values_carry_their_severities_and_inputs_are_untouched(setup) -> None:
    model, x, y = setup
    before = x.clone()
    out = corruption_accuracy(model, x, y, [CorruptionThreat("contrast", (5,)), "pixelate"], severities=(1,))
    assert [(r.corruption, r.severity) for r in out.rows] == [("contrast", 5), ("pixelate", 1)]
    assert torch.equal(x, before)


def test_bad_calls_are_refused(setup) -> None:
    model, x, y = setup
    with pytest.raises(ThreatModelError, match="unknown corruption"):
        corruption_accuracy(model, x, y, ["blurr"])
    with pytest.raises(ThreatModelError, match=r"1\.\.5"):
        corruption_accuracy(model, x, y, ["contrast"], severities=(0,))
    with pytest.raises(DataError, match="labels of shape"):
        corruption_accuracy(model, x, y[:10], ["contrast"])
    with pytest.raises(DataError, match="needs at least 3 channels"):
        corruption_accuracy(model, x, y, ["saturate"])


def test_two_channel_inputs_skip_what_needs_grey_or_rgb() -> None:
    import torch
    from torch import nn

    from bastion.model import TorchClassifier

    torch.manual_seed(0)
    model = TorchClassifier(
        nn.Sequential(nn.Flatten(), nn.Linear(2 * 16 * 16, 3)), bounds=(0.0, 1.0), num_classes=3
    )
    x = torch.rand(6, 2, 16, 16)
    report = corruption_accuracy(model, x, torch.arange(6) % 3, seed=0)
    for name in ("jpeg_compression", "snow", "spatter"):
        assert report.skipped.get(name) == "needs 1 or 3 channels" and name not in report.per_corruption
    assert "gaussian_noise" in report.per_corruption
