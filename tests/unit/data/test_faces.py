"""Faces loader: the seeded per-person split on synthetic archives, and the shared copy when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.data.faces import load_faces, split_per_person
from bastion.errors import DataError

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "faces"


@pytest.fixture()
def faces_dir(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 6), dtype=np.float32)
    y = np.arange(40, dtype=np.int64) // 10  # 4 people, 10 images each
    np.savez(tmp_path / "olivetti_faces.npz", x=x, y=y)
    return tmp_path, x, y


def test_split_is_disjoint_complete_and_stratified(faces_dir):
    root, x, y = faces_dir
    train, test = load_faces(root, "train"), load_faces(root, "test")
    assert train.x.shape == (28, 1, 8, 6) and test.x.shape == (12, 1, 8, 6)
    assert torch.bincount(train.y).tolist() == [7] * 4 and torch.bincount(test.y).tolist() == [3] * 4
    tr, te = set(train.meta["indices"]), set(test.meta["indices"])
    assert not tr & te and tr | te == set(range(40))
    # each row is the image at its recorded index, with its label
    index = torch.tensor(train.meta["indices"])
    torch.testing.assert_close(train.x[:, 0], torch.from_numpy(x)[index])
    assert train.y.tolist() == y[index.numpy()].tolist()
    assert train.class_names == ("s1", "s2", "s3", "s4") and train.bounds == (0.0, 1.0)


def test_split_is_seeded(faces_dir):
    root, _, _ = faces_dir
    a, b = load_faces(root, "test", seed=3), load_faces(root, "test", seed=3)
    c = load_faces(root, "test", seed=4)
    assert a.meta["indices"] == b.meta["indices"] and a.meta["indices"] != c.meta["indices"]


def test_uint8_file_and_custom_split(tmp_path):
    x = np.arange(20 * 3 * 2, dtype=np.uint8).reshape(20, 3, 2)
    np.savez(tmp_path / "att.npz", x=x, y=np.arange(20) // 5)
    ds = load_faces(tmp_path / "att.npz", "train", train_per_person=4)
    assert len(ds) == 16 and float(ds.x.max()) <= 1.0
    torch.testing.assert_close(ds.x[:, 0], torch.from_numpy(x[ds.meta["indices"]]).float() / 255)


def test_errors(tmp_path, faces_dir):
    root, _, _ = faces_dir
    with pytest.raises(DataError, match="needs more"):
        load_faces(root, "train", train_per_person=10)
    with pytest.raises(DataError, match="does not exist"):
        load_faces(tmp_path / "missing", "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no olivetti_faces\.npz"):
        load_faces(empty)
    with pytest.raises(DataError, match="split"):
        load_faces(root, "validation")
    with pytest.raises(DataError, match="needs more"):
        split_per_person(torch.tensor([0, 0, 1]), 1, 0)


def test_shared_copy():
    if not (SHARED / "olivetti_faces.npz").is_file():
        pytest.skip(f"shared data not present at {SHARED}")
    train, test = load_faces(SHARED, "train"), load_faces(SHARED, "test")
    assert train.x.shape == (280, 1, 64, 64) and test.x.shape == (120, 1, 64, 64)
    assert train.num_classes == test.num_classes == 40
    assert abs(float(torch.cat([train.x, test.x]).double().mean()) - 0.5470425) < 1e-6
    big = load_faces(SHARED / "att_faces_112x92.npz", "test")
    assert big.x.shape == (120, 1, 112, 92)
