"""The scan result's helpers, input validation, and both activation scanners on a backdoored digits CNN."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bastion.data import load_digits
from bastion.data.dataset import Dataset
from bastion.defenses.training import TrainingConfig, harden
from bastion.detect.activation_clustering import ActivationClustering
from bastion.detect.data_scan import ClassScan, DataScanResult
from bastion.detect.spectral import SpectralSignatures
from bastion.errors import DataError, ModelContractError
from bastion.model import TorchClassifier
from bastion.zoo.architectures import digits_cnn


def badnets(data: Dataset, share: float, target: int = 0, seed: int = 0) -> tuple[Dataset, torch.Tensor]:
    """A white 2x2 patch at the bottom right of ``share`` of the non-target images, relabelled ``target``."""
    g = torch.Generator().manual_seed(seed)
    pool = (data.y != target).nonzero().flatten()
    chosen = pool[torch.randperm(pool.numel(), generator=g)[: round(share * pool.numel())]]
    x, y = data.x.clone(), data.y.clone()
    x[chosen, :, -2:, -2:] = 1.0
    y[chosen] = target
    truth = torch.zeros(len(data), dtype=torch.bool)
    truth[chosen] = True
    return Dataset(x, y, data.num_classes, name="digits-badnets"), truth


def train(data: Dataset, seed: int = 0) -> nn.Module:
    cfg = TrainingConfig(epochs=10, validation=0.0, seed=seed)
    return harden(digits_cnn(), data, "standard", config=cfg, from_scratch=True).module


@pytest.fixture(scope="module")
def backdoored() -> tuple[nn.Module, Dataset, torch.Tensor]:
    data, truth = badnets(load_digits("train"), 0.10)
    return train(data), data, truth


def _result(flagged: list[bool], labels: list[int]) -> DataScanResult:
    n = len(flagged)
    f = torch.tensor(flagged)
    classes = tuple(
        ClassScan(c, labels.count(c), sum(1 for i in range(n) if labels[i] == c and flagged[i]), 9.0, True)
        for c in sorted(set(labels))
    )
    return DataScanResult("ac", torch.arange(n, dtype=torch.float64), f, classes, 8.0, {"dims": 10})


def test_precision_recall_and_false_positive_rate_known_answers() -> None:
    result = _result([True, True, False, False, True], [0, 0, 0, 1, 1])
    truth = torch.tensor([True, False, True, False, True])
    assert result.precision_recall(truth) == (2 / 3, 2 / 3)
    assert result.false_positive_rate(truth) == 0.5
    assert result.flagged_indices.tolist() == [0, 1, 4]
    assert result.suspected and result.suspicious_classes == (0, 1)
    assert result.verdict.startswith("poisoning suspected in class(es) 0, 1: 3 of 5 samples flagged")
    nothing = _result([False] * 3, [0, 0, 0])
    assert nothing.precision_recall(torch.tensor([False, True, False])) == (1.0, 0.0)
    with pytest.raises(DataError, match=r"\(5,\) bool"):
        result.precision_recall(torch.tensor([1, 0, 1, 0, 1]))


def test_clean_subset_and_json() -> None:
    data = Dataset(torch.rand(5, 1, 2, 2), torch.tensor([0, 0, 0, 1, 1]), 2)
    result = _result([True, False, False, True, False], data.y.tolist())
    kept = result.clean_subset(data)
    assert len(kept) == 3 and torch.equal(kept.x, data.x[[1, 2, 4]])
    with pytest.raises(DataError, match="covered 5 samples"):
        result.clean_subset(data.subset(slice(0, 4)))
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["flagged_indices"] == [0, 3] and payload["classes"][1]["n_flagged"] == 1
    assert payload["suspected"] is True and payload["params"] == {"dims": 10}


def test_result_rejects_inconsistent_shapes() -> None:
    with pytest.raises(DataError, match="flagged"):
        DataScanResult("ac", torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.bool), (), 8.0)
    with pytest.raises(DataError, match="add up"):
        DataScanResult("ac", torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.bool), (), 8.0)


def test_scan_validates_model_and_data(backdoored) -> None:
    module, data, _ = backdoored
    with pytest.raises(ModelContractError, match="no layer 'fc'"):
        ActivationClustering(layer="fc").scan(module, data)
    three = Dataset(data.x[:30], data.y[:30] % 3, 3)
    with pytest.raises(DataError, match="3 classes"):
        SpectralSignatures().scan(module, three)
    with pytest.raises(DataError, match="bastion Dataset"):
        SpectralSignatures().scan(module, data.x)  # type: ignore[arg-type]
    wide = Dataset(data.x[:40] * 2, data.y[:40], 10, bounds=(0, 2))
    with pytest.raises(DataError, match="outside the model's bounds"):
        SpectralSignatures().scan(TorchClassifier(module, bounds=(0, 1)), wide)


@pytest.mark.parametrize("scanner", [ActivationClustering(layer="5"), SpectralSignatures(layer="5")])
def test_backdoored_digits_poison_is_found(backdoored, scanner) -> None:
    module, data, truth = backdoored
    result = scanner.scan(module, data)
    precision, recall = result.precision_recall(truth)
    assert 0 in result.suspicious_classes, result.verdict
    assert recall >= 0.9 and result.false_positive_rate(truth) <= 0.05, (precision, recall)
    # Every poisoned sample outscores the median clean sample of the target class.
    clean_target = (data.y == 0) & ~truth
    assert float(result.scores[truth].min()) > float(result.scores[clean_target].median())


def test_scan_does_not_touch_the_model_or_data(backdoored) -> None:
    module, data, _ = backdoored
    module.train()
    x = data.x.clone()
    ActivationClustering(layer="5").scan(module, data)
    assert module.training and torch.equal(data.x, x)
    module.eval()
