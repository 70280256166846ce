"""Image folders (one sub-folder per class) read with Pillow."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from bastion.data import load_folder
from bastion.errors import DataError

Image = pytest.importorskip("PIL.Image")


def write(path, array: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


@pytest.fixture()
def grey_folder(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {}
    for cls in ("dog", "cat"):  # written out of order: class order must come from sorting
        for i in range(2):
            arr = rng.integers(0, 256, size=(5, 6), dtype=np.uint8)  # H=5, W=6
            write(tmp_path / cls / f"{i}.png", arr, "L")
            pixels[(cls, i)] = arr
    (tmp_path / "cat" / "notes.txt").write_text("not an image, ignored")
    (tmp_path / ".hidden").mkdir()
    return tmp_path, pixels


def test_greyscale_folder(grey_folder):
    root, pixels = grey_folder
    ds = load_folder(root)
    assert ds.class_names == ("cat", "dog") and ds.num_classes == 2
    assert ds.x.shape == (4, 1, 5, 6) and ds.y.tolist() == [0, 0, 1, 1]
    expected = np.stack([pixels[("cat", 0)], pixels[("cat", 1)], pixels[("dog", 0)], pixels[("dog", 1)]])
    torch.testing.assert_close(ds.x[:, 0], torch.from_numpy(expected).float() / 255)
    assert ds.meta["mode"] == "L"


def test_mixed_modes_become_rgb(tmp_path):
    grey = np.full((4, 4), 200, dtype=np.uint8)
    colour = np.zeros((4, 4, 3), dtype=np.uint8)
    colour[..., 0] = 255
    write(tmp_path / "a" / "g.png", grey, "L")
    write(tmp_path / "b" / "c.png", colour, "RGB")
    ds = load_folder(tmp_path)
    assert ds.x.shape == (2, 3, 4, 4)
    assert torch.allclose(ds.x[0], torch.full((3, 4, 4), 200 / 255))  # grey replicated over channels
    assert torch.equal(ds.x[1, 0], torch.ones(4, 4)) and torch.equal(ds.x[1, 1:], torch.zeros(2, 4, 4))


def test_odd_size_named(tmp_path):
    write(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8), "L")
    write(tmp_path / "b" / "odd.png", np.zeros((5, 4), np.uint8), "L")
    with pytest.raises(DataError, match=r"odd\.png: image size 4x5 differs from 4x4"):
        load_folder(tmp_path)


def test_empty_class_folder(tmp_path):
    write(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8), "L")
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_folder(tmp_path)


def test_no_class_folders(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        load_folder(tmp_path)


def test_unreadable_image_named(tmp_path):
    write(tmp_path / "a" / "0.png", np.zeros((4, 4), np.uint8), "L")
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load_folder(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist; expected a directory with one sub-folder"):
        load_folder(tmp_path / "nope")


def test_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes "from PIL import ..." raise ImportError
    with pytest.raises(DataError, match=r"pip install 'bastion\[images\]'"):
        load_folder(tmp_path)
