"""load_dataset: spec strings dispatch to the right loader; bad specs fail with the valid forms listed."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from bastion.data import load_dataset, load_digits
from bastion.errors import DataError


def test_unknown_spec_lists_forms():
    with pytest.raises(
        DataError, match=r"unknown dataset spec 'imagenet:/x'.*mnist:DIR.*cifar10:PATH.*csv:FILE"
    ):
        load_dataset("imagenet:/x")


def test_path_required():
    with pytest.raises(DataError, match="needs a path after 'mnist:'"):
        load_dataset("mnist:")


def test_label_only_for_csv():
    with pytest.raises(DataError, match="only applies to csv"):
        load_dataset("digits", label="y")


def test_bad_split():
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("digits", split="dev")


def test_digits_spec_matches_loader():
    a, b = load_dataset("digits", split="train"), load_digits("train")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_npz_csv_and_idx_specs(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2), np.uint8), y=np.array([0, 1, 0]))
    assert load_dataset(f"npz:{tmp_path / 'd.npz'}", split="train").x.shape == (3, 2)  # split ignored
    (tmp_path / "t.csv").write_text("a,t\n1,x\n2,y\n")
    assert load_dataset(f"csv:{tmp_path / 't.csv'}", label="t").class_names == ("x", "y")
    images = np.zeros((2, 28, 28), np.uint8)
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + images.tobytes())
    labels = (2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([3, 9])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(labels)
    assert load_dataset(f"fashion-mnist:{tmp_path}").class_names[9] == "Ankle boot"
    assert load_dataset(f"mnist:{tmp_path}").y.tolist() == [3, 9]


def test_missing_path_named(tmp_path):
    missing = tmp_path / "gone.npz"
    with pytest.raises(DataError, match=re.escape(f"{missing} does not exist")):
        load_dataset(f"npz:{missing}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'gone'}")
