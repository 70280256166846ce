"""scikit-learn's 8x8 digits (1,797 images, ships with scikit-learn) with a fixed stratified split."""

from __future__ import annotations

import numpy as np
import torch

from bastion.data._util import check_split
from bastion.data.dataset import Dataset

__all__ = ["load_digits"]

TEST_SIZE = 0.25
SPLIT_SEED = 0


def load_digits(split: str = "test") -> Dataset:
    """Digits as x (N, 1, 8, 8) float32 in [0, 1] (pixel / 16), y (N,), classes "0".."9".

    The split is ``train_test_split(test_size=0.25, stratify=y, random_state=0)``: fixed, so every
    run and every machine sees the same 1,347 train / 450 test images. Indices are kept in the
    original order within each split. Nothing is cached on disk.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    check_split(split)
    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)
    target = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(target.shape[0]), test_size=TEST_SIZE, stratify=target, random_state=SPLIT_SEED
    )
    index = np.sort(train_idx if split == "train" else test_idx)
    x = torch.from_numpy(images[index] / 16.0).unsqueeze(1)
    y = torch.from_numpy(target[index])
    return Dataset(
        x,
        y,
        num_classes=10,
        bounds=(0.0, 1.0),
        class_names=tuple(str(i) for i in range(10)),
        name=f"digits-{split}",
        meta={"source": "sklearn.datasets.load_digits", "split": split, "test_size": TEST_SIZE},
    )
