"""CIFAR-10 from numpy archives: synthetic directories and files, and the shared copy when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.data import load_cifar10
from bastion.data.cifar10 import CIFAR10_CLASSES
from bastion.errors import DataError

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "cifar10"


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), rng.integers(
        0, 10, size=n, dtype=np.uint8
    )


@pytest.fixture()
def cifar_dir(tmp_path):
    x, y = images(4, 0)
    np.savez(tmp_path / "cifar10_test.npz", x=x, y=y, classes=np.array(CIFAR10_CLASSES))
    for i in range(1, 6):
        np.savez(tmp_path / f"cifar10_train_{i}.npz", x=images(2, i)[0], y=np.full(2, i, dtype=np.uint8))
    return tmp_path, x, y


def test_directory_test_split(cifar_dir):
    root, x, y = cifar_dir
    ds = load_cifar10(root, "test")
    assert ds.x.shape == (4, 3, 32, 32) and ds.x.dtype == torch.float32
    torch.testing.assert_close(ds.x, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    assert ds.y.tolist() == y.tolist() and ds.class_names == CIFAR10_CLASSES and ds.name == "cifar10-test"


def test_directory_train_split_concatenates_parts_in_order(cifar_dir):
    ds = load_cifar10(cifar_dir[0], "train")
    assert ds.x.shape == (10, 3, 32, 32)
    assert ds.y.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    torch.testing.assert_close(ds.x[2:4], torch.from_numpy(images(2, 2)[0]).permute(0, 3, 1, 2).float() / 255)


def test_single_file_and_flat_rows(tmp_path):
    x, y = images(3, 7)
    flat = x.transpose(0, 3, 1, 2).reshape(3, -1)  # the original CIFAR layout: 3072 values in CHW order
    np.savez(tmp_path / "flat.npz", x=flat, labels=y)
    ds = load_cifar10(tmp_path / "flat.npz", "train")  # split is ignored for a single file
    torch.testing.assert_close(ds.x, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"


def test_missing_train_part(cifar_dir):
    root = cifar_dir[0]
    (root / "cifar10_train_3.npz").unlink()
    with pytest.raises(DataError, match=r"missing cifar10_train_3\.npz"):
        load_cifar10(root, "train")


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*CIFAR-10"):
        load_cifar10(tmp_path / "none")


def test_wrong_shape(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 28, 28), np.uint8), y=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match=r"\(N, 32, 32, 3\)"):
        load_cifar10(tmp_path / "bad.npz")


def test_real_cifar10_test_set():
    if not (SHARED / "cifar10_test.npz").is_file():
        pytest.skip(f"shared data not present at {SHARED}")
    ds = load_cifar10(SHARED, "test")
    assert ds.x.shape == (10000, 3, 32, 32) and ds.x.dtype == torch.float32
    assert torch.bincount(ds.y).tolist() == [1000] * 10
    # the published per-channel statistics of the CIFAR-10 test set (README)
    mean = ds.x.mean(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.tensor([0.4942, 0.4851, 0.4504]), atol=2e-4, rtol=0)
