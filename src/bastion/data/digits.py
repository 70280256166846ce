"""scikit-learn's 8x8 digits (1,797 images, ships with scikit-learn) with a fixed stratified split."""

from __future__ import annotations

import importlib.util
import json
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

from bastion.data._util import check_split
from bastion.data.dataset import Dataset
from bastion.errors import DataError

__all__ = ["load_digits"]

TEST_SIZE = 0.25
SPLIT_SEED = 0
N_SAMPLES = 1797


def _sklearn_digits_csv() -> Path | None:
    """scikit-learn's bundled ``digits.csv.gz``, found without importing scikit-learn (slow to import)."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images (1797, 8, 8) float32 with values 0..16 and targets (1797,) int64."""
    path = _sklearn_digits_csv()
    if path is not None:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    try:  # an unusual scikit-learn layout: let scikit-learn find its own file
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise DataError(
            "the digits data ship with scikit-learn, which is not installed: pip install scikit-learn"
        ) from exc
    bunch = sk_load_digits()
    return np.asarray(bunch.images, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)


def test_index() -> np.ndarray:
    """The 450 test indices (sorted) of the fixed split, stored with the package."""
    text = (files("bastion.data") / "digits_split.json").read_text(encoding="utf-8")
    return np.asarray(json.loads(text)["test_index"], dtype=np.int64)


def load_digits(split: str = "test") -> Dataset:
    """Digits as x (N, 1, 8, 8) float32 in [0, 1] (pixel / 16), y (N,), classes "0".."9".

    The split is ``train_test_split(test_size=0.25, stratify=y, random_state=0)``: fixed, so every
    run and every machine sees the same 1,347 train / 450 test images. Its indices ship with the
    package (``digits_split.json``; a test checks them against scikit-learn), which spares every run
    the import of scikit-learn. Indices are kept in the original order within each split. Nothing is
    cached on disk.
    """
    check_split(split)
    images, target = _read_digits()
    if target.shape[0] != N_SAMPLES:
        raise DataError(
            f"scikit-learn's digits have {target.shape[0]} samples, expected {N_SAMPLES}; "
            "reinstall scikit-learn"
        )
    is_test = np.zeros(N_SAMPLES, dtype=bool)
    is_test[test_index()] = True
    index = np.flatnonzero(is_test if split == "test" else ~is_test)
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
