"""Confident learning: known answers on hand-made probabilities, and flipped digits labels found."""

from __future__ import annotations

import pytest
import torch

from bastion.data import load_digits
from bastion.data.dataset import Dataset
from bastion.detect.label_noise import LabelNoise, confident_issues, stratified_folds
from bastion.errors import DetectorError, ModelContractError
from bastion.model import TorchClassifier
from bastion.zoo.architectures import digits_mlp


def flip(data: Dataset, share: float, seed: int = 0) -> tuple[Dataset, torch.Tensor]:
    """Relabel ``share`` of the samples to a uniformly drawn *other* class."""
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(data), generator=g)[: round(share * len(data))]
    y = data.y.clone()
    y[chosen] = (y[chosen] + torch.randint(1, data.num_classes, (chosen.numel(),), generator=g)) % 10
    truth = torch.zeros(len(data), dtype=torch.bool)
    truth[chosen] = True
    return Dataset(data.x, y, data.num_classes, name="digits-flipped"), truth


def test_confident_issues_known_answer() -> None:
    probs = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0],  # label 0, confident 0: fine
            [0.7, 0.3, 0.0, 0.0],  # label 0
            [0.1, 0.9, 0.0, 0.0],  # label 0 but confidently 1: issue
            [0.2, 0.8, 0.0, 0.0],  # label 1
            [0.4, 0.6, 0.0, 0.0],  # label 1, below t_1 = 0.7 but no other class reaches its threshold
            [0.5, 0.3, 0.2, 0.0],  # label 2, t_2 = 0.2: fine
            [0.0, 0.1, 0.0, 0.9],  # label 2, probable class 3 has no samples (never "confident")
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    # t_0 = (0.9 + 0.7 + 0.1) / 3 = 0.567, t_1 = 0.7, t_2 = 0.1, t_3 = infinity
    assert confident_issues(probs, y).tolist() == [False, False, True, False, False, False, False]


def test_stratified_folds_balance_every_class() -> None:
    y = torch.tensor([0] * 10 + [1] * 7 + [2] * 3)
    fold = stratified_folds(y, 3, seed=0)
    for c in range(3):
        counts = torch.bincount(fold[y == c], minlength=3)
        assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(fold, stratified_folds(y, 3, seed=0))
    assert not torch.equal(fold, stratified_folds(y, 3, seed=1))


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits("train")


def test_flipped_labels_are_found(digits: Dataset) -> None:
    noisy, truth = flip(digits, 0.2)
    result = LabelNoise(folds=4, epochs=10).scan(digits_mlp(), noisy)
    precision, recall = result.precision_recall(truth)
    # Chance precision is 0.2; measured about 0.93 precision and 0.78 recall.
    assert precision >= 0.8 and recall >= 0.6, (precision, recall)
    assert result.suspected and result.finding == "label noise"
    assert result.probabilities is not None and result.probabilities.shape == (len(noisy), 10)
    torch.testing.assert_close(result.probabilities.sum(1), torch.ones(len(noisy), dtype=torch.float64))
    # The out-of-fold models mostly recover the true label of a flipped sample.
    recovered = result.probabilities.argmax(1)[truth] == digits.y[truth]
    assert float(recovered.double().mean()) >= 0.8
    assert float(result.scores[truth].mean()) > float(result.scores[~truth].mean()) + 0.5


def test_clean_labels_are_left_alone(digits: Dataset) -> None:
    result = LabelNoise(folds=4, epochs=10).scan(TorchClassifier(digits_mlp()), digits)
    assert not result.suspected, result.verdict
    assert int(result.flagged.sum()) == 0
    assert all(c.statistic is not None and c.statistic < 0.05 for c in result.classes)


def test_progress_and_errors(digits: Dataset) -> None:
    small = digits.subset(slice(0, 120))
    seen: list[tuple[int, int]] = []
    LabelNoise(folds=2, epochs=1).scan(digits_mlp(), small, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]
    for kwargs in ({"folds": 1}, {"epochs": 0}, {"tolerance": 0.0}, {"tolerance": 1.5}, {"config": {}}):
        with pytest.raises(DetectorError):
            LabelNoise(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="too few"):
        LabelNoise(folds=4).scan(digits_mlp(), digits.subset(slice(0, 6)))

    class Scores:
        bounds = (0.0, 1.0)
        num_classes = 10

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 10)

    with pytest.raises(ModelContractError, match="retrains the model's architecture"):
        LabelNoise().scan(Scores(), digits)  # type: ignore[arg-type]
