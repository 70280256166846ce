"""Generic .npz loading: dtype scaling, the layout rule, bounds inference, refusal of pickles."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from bastion.data import load_npz
from bastion.errors import DataError


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_uint8_nhwc_becomes_nchw(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 8, 6, 3), dtype=np.uint8)
    ds = load_npz(save(tmp_path / "d.npz", x=x, y=np.arange(5)))
    assert ds.x.shape == (5, 3, 8, 6) and ds.bounds == (0.0, 1.0) and ds.num_classes == 5
    # element (n, c, h, w) is pixel (n, h, w, c) / 255
    assert float(ds.x[2, 1, 4, 5]) == pytest.approx(x[2, 4, 5, 1] / 255)
    torch.testing.assert_close(ds.x, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)


def test_greyscale_gets_channel(tmp_path):
    x = np.linspace(0, 1, 4 * 5 * 5, dtype=np.float32).reshape(4, 5, 5)
    ds = load_npz(save(tmp_path / "g.npz", x=x, y=np.array([0, 1, 1, 0])))
    assert ds.x.shape == (4, 1, 5, 5) and ds.bounds == (0.0, 1.0)
    assert torch.equal(ds.x[:, 0], torch.from_numpy(x))


def test_channels_first_kept(tmp_path):
    x = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    assert load_npz(save(tmp_path / "c.npz", x=x, y=np.zeros(2, np.int64))).x.shape == (2, 3, 8, 8)
    # tiny spatial dims are not mistaken for channels-last: (N, 3, 3, 3) stays as given
    assert load_npz(save(tmp_path / "t.npz", x=np.zeros((2, 3, 3, 3)), y=np.zeros(2, np.int64))).x.shape == (
        2,
        3,
        3,
        3,
    )


def test_tabular_bounds_from_data(tmp_path):
    x = np.array([[-2.5, 0.0], [1.0, 7.25], [3.0, 4.0]])
    ds = load_npz(save(tmp_path / "tab.npz", x=x, y=np.array([0, 2, 1])))
    assert ds.x.shape == (3, 2) and ds.x.dtype == torch.float32
    assert ds.bounds == (-2.5, 7.25)
    assert ds.num_classes == 3


def test_integer_pixels_other_than_uint8(tmp_path):
    x = np.array([[0, 1], [1, 0]], dtype=np.int16)
    ds = load_npz(save(tmp_path / "i.npz", x=x, y=np.array([0, 1])))
    assert ds.bounds == (0.0, 1.0) and torch.equal(ds.x, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_class_names(tmp_path):
    ds = load_npz(
        save(
            tmp_path / "n.npz", x=np.zeros((2, 4)), y=np.array([0, 2]), class_names=np.array(["a", "b", "c"])
        )
    )
    assert ds.class_names == ("a", "b", "c") and ds.num_classes == 3


def test_nan_refused(tmp_path):
    x = np.zeros((3, 4), dtype=np.float32)
    x[1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        load_npz(save(tmp_path / "nan.npz", x=x, y=np.zeros(3, np.int64)))


def test_missing_key_lists_available(tmp_path):
    with pytest.raises(DataError, match=r"missing array.*y.*holds: labels, x"):
        load_npz(save(tmp_path / "k.npz", x=np.zeros((2, 2)), labels=np.zeros(2)))


@pytest.mark.parametrize(
    "y,message",
    [
        (np.array([0.0, 1.5]), "integer class indices"),
        (np.array([0, -1]), "negative"),
        (np.array([0, 1, 2]), r"shape \(2,\)"),
    ],
)
def test_bad_labels(tmp_path, y, message):
    with pytest.raises(DataError, match=message):
        load_npz(save(tmp_path / "y.npz", x=np.zeros((2, 2)), y=y))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.npz does not exist"):
        load_npz(tmp_path / "missing.npz")


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_object_arrays_are_not_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    x = np.array([_Marker(marker), _Marker(marker)], dtype=object)
    path = save(tmp_path / "evil.npz", x=x, y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="without unpickling"):
        load_npz(path)
    assert not marker.exists()


def test_corrupted_archive_is_a_data_error(tmp_path):
    # A flipped byte inside an array's data breaks the member's CRC: zipfile raises BadZipFile on read.
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 8, 8), dtype=np.uint8), y=np.arange(4))
    raw = bytearray(path.read_bytes())
    start = raw.find(b"\x93NUMPY")  # the first member's .npy header; its data follows
    raw[start + 200] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"not a readable \.npz archive"):
        load_npz(path)
