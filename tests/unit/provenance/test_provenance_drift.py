"""Drift: the vectorised KS and BH against scipy, unbiased MMD² against its formula, and drift_test's
verdicts: two halves of digits do not drift; brighter images, one shifted pixel and a new class mix do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import false_discovery_control, ks_2samp

from bastion.data import Dataset, load_dataset
from bastion.errors import DataError
from bastion.provenance import drift_test, mmd_test
from bastion.provenance.ks import benjamini_hochberg, ks_p_values, ks_statistics


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", split="train")


def halves(ds: Dataset, seed: int = 0) -> tuple[Dataset, Dataset]:
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    return ds.subset(order[: len(ds) // 2]), ds.subset(order[len(ds) // 2 :])


def test_ks_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (300, 5), generator=g).float() - 2
    b = torch.randint(0, 6, (250, 5), generator=g).float() - 2.5
    a[:, 4], b[:, 4] = torch.randn(300, generator=g), torch.randn(250, generator=g) + 0.3
    a[:3, 0] = -0.0  # equal to 0.0: must tie with it
    stats = ks_statistics(a, b)
    p = ks_p_values(stats, 300, 250)
    for j in range(5):
        ref = ks_2samp(a[:, j].numpy(), b[:, j].numpy(), method="asymp")
        assert stats[j] == pytest.approx(ref.statistic, abs=1e-12)
        assert p[j] == pytest.approx(ref.pvalue, rel=1e-9)


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(0).random(200) ** 4
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p), rtol=1e-12)


def test_unbiased_mmd2_matches_the_formula_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 3, generator=g), torch.randn(40, 3, generator=g) + 0.5
    z = torch.cat([x, y]).double()
    d2 = torch.cdist(z, z) ** 2
    sigma2 = float(d2[~torch.eye(70, dtype=torch.bool)].median())
    k = torch.exp(-d2 / (2 * sigma2))
    kxx, kyy, kxy = k[:30, :30], k[30:, 30:], k[:30, 30:]
    expected = (kxx.sum() - kxx.trace()) / (30 * 29) + (kyy.sum() - kyy.trace()) / (40 * 39) - 2 * kxy.mean()
    r = mmd_test(x, y, permutations=99, generator=torch.Generator().manual_seed(1))
    assert r.mmd2 == pytest.approx(float(expected), rel=1e-9)
    assert r.bandwidth == pytest.approx(sigma2**0.5)
    assert r == mmd_test(x, y, permutations=99, generator=torch.Generator().manual_seed(1))
    far = mmd_test(x, y + 2.0, permutations=99, generator=torch.Generator().manual_seed(1))
    assert far.p_value == pytest.approx(1 / 100)  # nothing beats the observed statistic


def test_two_halves_of_one_dataset_do_not_drift(digits):
    ref, cur = halves(digits)
    report = drift_test(ref, cur, seed=0)
    assert not report.drift and report.verdict == "no drift"
    assert report.features_drifting == 0 and report.mmd_p_value > 0.025
    assert report.mmd_space == "inputs" and report.features_skipped >= 1  # digits' corner pixels are 0
    assert report == drift_test(ref, cur, seed=0)  # same seed, same report


def test_brighter_images_drift_and_the_top_features_got_brighter(digits):
    ref, cur = halves(digits)
    brighter = Dataset((cur.x + 0.2).clamp(0, 1), cur.y, 10)
    report = drift_test(ref, brighter, max_features=5)
    assert report.drift and report.ks_drift and report.mmd_drift
    assert report.features_drifting > 40
    for f in report.top_features:
        assert f.q_value < 0.025 and f.mean_current > f.mean_reference + 0.1


def test_one_shifted_pixel_is_the_top_feature(digits):
    ref, cur = halves(digits)
    x = cur.x.clone()
    x[:, 0, 3, 5] = (x[:, 0, 3, 5] + 0.5).clamp(0, 1)
    report = drift_test(ref, Dataset(x, cur.y, 10), max_features=3)
    assert report.drift and report.features_drifting == 1
    top = report.top_features[0]
    assert (top.index, top.position) == (3 * 8 + 5, (0, 3, 5))


def test_class_mix_shift_shows_in_model_embeddings(digits, digits_model):
    ref, cur = halves(digits)
    few = cur.subset(torch.nonzero(cur.y < 3).flatten())  # only digits 0, 1 and 2 arrive now
    report = drift_test(ref, few, digits_model, permutations=99)
    assert report.mmd_space == "embeddings" and report.mmd_drift and report.drift
    same = drift_test(ref, cur, digits_model, permutations=99)
    assert not same.mmd_drift


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"alpha": 1.5}, "alpha"), ({"permutations": 20}, "never give"), ({"mmd_samples": 1}, ">= 2")],
)
def test_bad_arguments(digits, kwargs, message):
    with pytest.raises(DataError, match=message):
        drift_test(digits, digits, **kwargs)


def test_shapes_must_match(digits):
    flat = Dataset(digits.x.flatten(1), digits.y, 10)
    with pytest.raises(DataError, match="same shape"):
        drift_test(digits, flat)
