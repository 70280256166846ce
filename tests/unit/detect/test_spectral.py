"""Spectral signatures on synthetic activations: a planted direction found, clean classes quiet."""

from __future__ import annotations

import pytest
import torch
from test_activation_clustering import _classes, _plant

from bastion.detect.spectral import SpectralSignatures, best_cut
from bastion.errors import DataError, DetectorError


def test_best_cut_is_the_exact_two_means_split() -> None:
    p = torch.tensor([10.0, 0.0, 10.2, 0.1, 0.2, 9.9], dtype=torch.float64)
    # Three against three: the tie goes to the lower group.
    assert best_cut(p).tolist() == [False, True, False, True, True, False]
    # Brute force over every split: no other split has a lower within-group sum of squares.
    g = torch.Generator().manual_seed(0)
    q = torch.randn(12, generator=g, dtype=torch.float64)
    lower = best_cut(q)
    sse = lambda m: float((q[m] - q[m].mean()).square().sum() + (q[~m] - q[~m].mean()).square().sum())  # noqa: E731
    order = q.argsort()
    best = min(sse(torch.isin(torch.arange(12), order[:k])) for k in range(2, 11))
    assert sse(lower) == pytest.approx(best)
    assert int(lower.sum()) <= 6


@pytest.mark.parametrize("share", [0.05, 0.2, 0.45])
def test_planted_direction_is_found_even_near_half_the_class(share: float) -> None:
    x, y = _classes([500, 500, 500], 24, seed=10)
    x, truth = _plant(x, y, label=2, share=share, shift=15.0, seed=11)
    result = SpectralSignatures().scan_features(x, y, 3)
    assert result.suspicious_classes == (2,)
    precision, recall = result.precision_recall(truth)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    # Tran et al.'s squared projection would rank both groups alike at 45%; the signed score does not.
    assert float(result.scores[truth].min()) > float(result.scores[(y == 2) & ~truth].max())


def test_clean_imbalanced_data_is_left_alone() -> None:
    sizes = [4000, 800, 200, 50, 21, 5]
    for seed in range(3):
        x, y = _classes(sizes, 40, seed=20 + seed)
        result = SpectralSignatures().scan_features(x, y)
        assert not result.suspected and int(result.flagged.sum()) == 0, result.verdict
        assert max(c.statistic or 0 for c in result.classes) < 4.5  # Gaussian: best 1-D split ~2.7 SD
        assert (
            result.classes[5].statistic is None and "fewer than min_class_size=20" in result.classes[5].note
        )


def test_a_minority_off_the_top_direction_is_not_claimed() -> None:
    # A small, weakly shifted group does not dominate the covariance: spectral stays quiet (it is the
    # conservative scanner), where activation clustering would look in more directions.
    x, y = _classes([1000], 24, seed=30, anisotropic=False)
    x, _ = _plant(x, y, label=0, share=0.03, shift=4.0, seed=31)
    assert not SpectralSignatures().scan_features(x, y).suspected


def test_identical_activations_give_zero_scores() -> None:
    result = SpectralSignatures().scan_features(torch.ones(30, 4), torch.zeros(30, dtype=torch.long))
    assert not result.suspected and torch.equal(result.scores, torch.zeros(30, dtype=torch.float64))


def test_errors() -> None:
    with pytest.raises(DetectorError, match="min_separation"):
        SpectralSignatures(min_separation=0)
    with pytest.raises(DetectorError, match="batch_size"):
        SpectralSignatures(batch_size=0)
    with pytest.raises(DataError, match="integer class indices"):
        SpectralSignatures().scan_features(torch.zeros(30, 4), torch.zeros(30))


def _hidden_shift(share: float, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three classes that vary 10x more along their first 5 axes than along the rest; in class 2,
    ``share`` of the samples are moved ``shift`` SD along axis 10 (a direction the classes barely use):
    less variance than the classes' own along axes 0-4, so the raw top direction misses it."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.ones(24)
    scale[:5] = 10.0
    x = torch.randn(1800, 24, generator=g, dtype=torch.float64) * scale
    y = torch.arange(3).repeat_interleave(600)
    x += 20 * torch.randn(3, 24, generator=g, dtype=torch.float64)[y]
    poisoned = torch.zeros(1800, dtype=torch.bool)
    poisoned[1200 : 1200 + round(share * 600)] = True
    x[poisoned, 10] += shift
    return x, y, poisoned


@pytest.mark.parametrize("share", [0.05, 0.25, 0.45])
def test_whitening_by_the_other_classes_finds_what_the_raw_top_direction_hides(share: float) -> None:
    x, y, truth = _hidden_shift(share, 12.0, seed=40)
    plain = SpectralSignatures(whiten=False).scan_features(x, y, 3)
    assert not plain.suspected  # the class's own spread dominates its top direction
    result = SpectralSignatures().scan_features(x, y, 3)
    assert result.suspicious_classes == (2,), result.verdict
    precision, recall = result.precision_recall(truth)
    assert precision >= 0.98 and recall >= 0.98, (precision, recall)
    assert result.classes[2].statistic is not None and result.classes[2].statistic > 8


def test_the_statistic_is_scale_and_rotation_free() -> None:
    x, y, _ = _hidden_shift(0.3, 12.0, seed=41)
    q = torch.linalg.qr(
        torch.randn(24, 24, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ).Q
    a = SpectralSignatures().scan_features(x, y, 3)
    b = SpectralSignatures().scan_features(1000.0 * x @ q, y, 3)
    assert torch.equal(a.flagged, b.flagged)
    for ca, cb in zip(a.classes, b.classes, strict=True):
        assert ca.statistic == pytest.approx(cb.statistic, rel=1e-6)


def test_clean_classes_with_different_covariances_stay_quiet_when_whitened() -> None:
    # Each class has its own random covariance, so relative to the others some direction always has
    # excess variance; a Gaussian projection still splits only ~2.7 SD apart.
    for seed in range(3):
        x, y = _classes([3000, 600, 150, 60], 64, seed=50 + seed)
        result = SpectralSignatures(seed=seed).scan_features(x, y)
        assert not result.suspected and int(result.flagged.sum()) == 0, result.verdict
        assert max(c.statistic or 0 for c in result.classes) < 4.5


def test_whitening_options_are_validated() -> None:
    for bad in (0, -1.0, float("inf"), True):
        with pytest.raises(DetectorError, match="ridge"):
            SpectralSignatures(ridge=bad)  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="whiten"):
        SpectralSignatures(whiten="yes")  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="dims"):
        SpectralSignatures(dims=0)
