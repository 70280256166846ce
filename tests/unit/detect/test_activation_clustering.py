"""Activation clustering on synthetic activations: planted subpopulations found, clean classes quiet."""

from __future__ import annotations

import pytest
import torch

from bastion.detect.activation_clustering import ActivationClustering, tied_gaussians, two_means
from bastion.errors import DataError, DetectorError


def _classes(sizes: list[int], dim: int, seed: int, *, anisotropic: bool = True) -> tuple[torch.Tensor, ...]:
    """Gaussian 'activations' (N, dim) per class, with a random covariance per class, and labels (N,)."""
    g = torch.Generator().manual_seed(seed)
    parts, labels = [], []
    for c, n in enumerate(sizes):
        scale = torch.randn(dim, dim, generator=g) / dim**0.5 if anisotropic else torch.eye(dim)
        parts.append(torch.randn(n, dim, generator=g) @ scale + 5 * torch.randn(dim, generator=g))
        labels.append(torch.full((n,), c))
    return torch.cat(parts), torch.cat(labels)


def _plant(x: torch.Tensor, y: torch.Tensor, label: int, share: float, shift: float, seed: int):
    """Move ``share`` of class ``label`` by ``shift`` clean standard deviations along a random direction."""
    g = torch.Generator().manual_seed(seed)
    index = (y == label).nonzero().flatten()
    chosen = index[torch.randperm(index.numel(), generator=g)[: round(share * index.numel())]]
    members = x[index] - x[index].mean(0)
    direction = torch.randn(x.shape[1], generator=g)
    direction /= direction.norm()
    spread = float((members @ direction).std())
    x = x.clone()
    x[chosen] += shift * spread * direction
    truth = torch.zeros(x.shape[0], dtype=torch.bool)
    truth[chosen] = True
    return x, truth


@pytest.mark.parametrize("share", [0.05, 0.2, 0.45])
def test_planted_subpopulation_is_found_and_other_classes_stay_quiet(share: float) -> None:
    x, y = _classes([400, 400, 400], 24, seed=0)
    x, truth = _plant(x, y, label=1, share=share, shift=15.0, seed=1)
    result = ActivationClustering().scan_features(x, y, 3)
    assert result.suspicious_classes == (1,)
    precision, recall = result.precision_recall(truth)
    assert recall >= 0.95 and precision >= 0.95, (precision, recall)
    assert result.classes[1].statistic is not None and result.classes[1].statistic >= 10
    # Poisoned samples score above every clean sample of their class.
    clean_1 = (y == 1) & ~truth
    assert float(result.scores[truth].min()) > float(result.scores[clean_1].max())


def test_clean_imbalanced_data_is_left_alone() -> None:
    sizes = [3000, 600, 150, 60, 25, 12]
    flagged = 0
    for seed in range(3):
        x, y = _classes(sizes, 32, seed=seed)
        result = ActivationClustering(seed=seed).scan_features(x, y, len(sizes) + 1)
        assert not result.suspected, result.verdict
        flagged += int(result.flagged.sum())
        stats = [c.statistic for c in result.classes if c.statistic is not None]
        assert max(stats) < 6, stats  # a Gaussian class splits at most ~5 SD apart
        assert result.classes[5].note.startswith("skipped: 12 samples")
        assert result.classes[6].note == "no samples" and result.classes[6].n == 0
    assert flagged == 0
    assert "no sign of poisoning" in result.verdict and "too small" in result.verdict


def test_min_separation_is_the_knob_and_flags_few_clean_samples() -> None:
    x, y = _classes([2000], 8, seed=3, anisotropic=False)
    near, _ = _plant(x, y, label=0, share=0.3, shift=6.0, seed=4)
    assert not ActivationClustering().scan_features(near, y).suspected  # ~6 SD < the default 10
    assert ActivationClustering(min_separation=5).scan_features(near, y).suspected
    far, truth = _plant(x, y, label=0, share=0.3, shift=10.5, seed=4)
    result = ActivationClustering().scan_features(far, y)
    # Gaussian groups 10 SD apart overlap by about Φ(-5): almost no clean sample joins the poison.
    assert result.suspected and result.false_positive_rate(truth) <= 0.002
    assert result.precision_recall(truth)[1] >= 0.99


def test_small_classes_use_few_dimensions_so_chance_splits_stay_close() -> None:
    # 40 samples in 64 dimensions: an unconstrained discriminant would separate any split perfectly.
    x, y = _classes([40, 40], 64, seed=5, anisotropic=False)
    result = ActivationClustering(dims=32).scan_features(x, y)
    assert not result.suspected and max(c.statistic or 0 for c in result.classes) < 6


def test_same_seed_same_result_and_inputs_untouched() -> None:
    x, y = _classes([300, 300], 16, seed=6)
    x, _ = _plant(x, y, 0, 0.25, 12.0, seed=7)
    before = x.clone()
    a = ActivationClustering(seed=3).scan_features(x, y)
    b = ActivationClustering(seed=3).scan_features(x, y)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.flagged, b.flagged)
    assert torch.equal(x, before)
    assert a.scores.dtype == torch.float64 and a.flagged.dtype == torch.bool


def test_two_means_and_tied_refinement_recover_two_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(50, 3, generator=g), torch.randn(30, 3, generator=g) + 10]).double()
    truth = torch.arange(80) >= 50
    start = two_means(z, g)
    member, loglik = tied_gaussians(z, start)
    assert torch.equal(member, truth) or torch.equal(member, ~truth)
    assert loglik > tied_gaussians(z, torch.arange(80) % 2 == 0, steps=1)[1]


def test_bad_inputs_and_hyperparameters_raise_typed_errors() -> None:
    ac = ActivationClustering()
    with pytest.raises(DataError, match=r"\(N, D\)"):
        ac.scan_features(torch.zeros(10), torch.zeros(10, dtype=torch.long))
    with pytest.raises(DataError, match="labels must be"):
        ac.scan_features(torch.zeros(10, 3), torch.zeros(9, dtype=torch.long))
    with pytest.raises(DataError, match=r"lie in \[0, 2\)"):
        ac.scan_features(torch.zeros(10, 3), torch.full((10,), 2), 2)
    with pytest.raises(DataError, match="NaN"):
        ac.scan_features(torch.full((10, 3), float("nan")), torch.zeros(10, dtype=torch.long))
    for kwargs in ({"dims": 0}, {"restarts": -1}, {"min_separation": -1.0}, {"seed": -1}, {"layer": ""}):
        with pytest.raises(DetectorError):
            ActivationClustering(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="min_class_size"):
        ActivationClustering(min_class_size=2)


def test_whitening_keeps_a_poison_the_top_components_miss() -> None:
    from test_spectral import _hidden_shift

    # The shift (12 SD along a direction the classes barely use) adds less variance than the classes'
    # own five strong directions plus noise: the top 2 principal components of the class do not hold it.
    x, y, truth = _hidden_shift(0.3, 12.0, seed=42)
    assert not ActivationClustering(dims=2, whiten=False).scan_features(x, y, 3).suspected
    result = ActivationClustering(dims=2).scan_features(x, y, 3)
    assert result.suspicious_classes == (2,), result.verdict
    precision, recall = result.precision_recall(truth)
    assert precision >= 0.98 and recall >= 0.98, (precision, recall)


def test_whitening_options_are_validated() -> None:
    with pytest.raises(DetectorError, match="ridge"):
        ActivationClustering(ridge=0)
    with pytest.raises(DetectorError, match="whiten"):
        ActivationClustering(whiten=1)  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="whiten_dims"):
        ActivationClustering(whiten_dims=0)
