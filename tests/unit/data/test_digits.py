"""The digits loader: a fixed, stratified, deterministic split of scikit-learn's 1,797 images."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from bastion.data import load_digits
from bastion.errors import DataError


@pytest.fixture(scope="module")
def splits():
    return load_digits("train"), load_digits("test")


def test_shapes_and_range(splits):
    train, test = splits
    assert train.x.shape == (1347, 1, 8, 8) and test.x.shape == (450, 1, 8, 8)
    for ds in splits:
        assert ds.x.dtype == torch.float32 and ds.bounds == (0.0, 1.0)
        assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
        # 17 grey levels: every pixel is a multiple of 1/16.
        assert torch.equal(ds.x * 16, (ds.x * 16).round())
        assert ds.class_names == tuple(str(i) for i in range(10))


def test_split_partitions_the_data(splits):
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    everything = Counter(
        (img.astype(np.uint8).tobytes(), int(t)) for img, t in zip(bunch.images, bunch.target, strict=True)
    )
    both = Counter()
    for ds in splits:
        pixels = (ds.x[:, 0] * 16).round().to(torch.uint8).numpy()
        both.update((p.tobytes(), int(t)) for p, t in zip(pixels, ds.y, strict=True))
    assert both == everything  # disjoint and complete, as multisets of (image, label)


def test_stratified(splits):
    train, test = splits
    total = torch.bincount(torch.cat([train.y, test.y]), minlength=10)
    for ds, share in ((train, 0.75), (test, 0.25)):
        counts = torch.bincount(ds.y, minlength=10)
        assert (counts.double() - share * total.double()).abs().max() <= 1.0, (counts, total)


def test_deterministic(splits):
    again = load_digits("test")
    assert torch.equal(again.x, splits[1].x) and torch.equal(again.y, splits[1].y)


def test_bad_split():
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_digits("val")


def test_stored_split_is_scikit_learns():
    # The shipped indices must be exactly what the documented train_test_split call gives, and the
    # images must be scikit-learn's own (read without importing scikit-learn).
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    from bastion.data.digits import test_index

    bunch = sk_load_digits()
    _, test = train_test_split(
        np.arange(bunch.target.shape[0]), test_size=0.25, stratify=bunch.target, random_state=0
    )
    assert np.array_equal(test_index(), np.sort(test))
    ds = load_digits("test")
    assert np.array_equal((ds.x[:, 0] * 16).round().numpy(), bunch.images[np.sort(test)])
    assert np.array_equal(ds.y.numpy(), bunch.target[np.sort(test)])
