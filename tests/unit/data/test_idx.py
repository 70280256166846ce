"""MNIST-style IDX loading: synthetic files (raw and gzipped) and, when present, the shared copies."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.data import load_fashion_mnist, load_mnist
from bastion.data.idx import FASHION_CLASSES
from bastion.errors import DataError

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(root: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *, gz: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in (
        (f"{prefix}-images-idx3-ubyte", idx_bytes(images, 2051)),
        (f"{prefix}-labels-idx1-ubyte", idx_bytes(labels, 2049)),
    ):
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)


@pytest.fixture()
def synthetic() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8), np.array(
        [7, 2, 1, 0, 4, 9], dtype=np.uint8
    )


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split,prefix", [("test", "t10k"), ("train", "train")])
def test_round_trip(tmp_path, synthetic, gz, split, prefix):
    images, labels = synthetic
    write_split(tmp_path, prefix, images, labels, gz=gz)
    ds = load_mnist(tmp_path, split)
    assert ds.x.shape == (6, 1, 28, 28) and ds.x.dtype == torch.float32
    torch.testing.assert_close(ds.x[:, 0], torch.from_numpy(images).float() / 255)
    assert ds.y.tolist() == labels.tolist()
    assert ds.bounds == (0.0, 1.0) and ds.num_classes == 10 and ds.name == f"mnist-{split}"


def test_split_picks_files(tmp_path, synthetic):
    images, labels = synthetic
    write_split(tmp_path, "train", images[:4], labels[:4], gz=True)
    write_split(tmp_path, "t10k", images[4:], labels[4:], gz=False)
    assert len(load_mnist(tmp_path, "train")) == 4
    assert load_mnist(tmp_path, "test").y.tolist() == [4, 9]


def test_dotted_file_names(tmp_path, synthetic):
    images, labels = synthetic
    (tmp_path / "t10k-images.idx3-ubyte").write_bytes(idx_bytes(images, 2051))
    (tmp_path / "t10k-labels.idx1-ubyte").write_bytes(idx_bytes(labels, 2049))
    assert len(load_mnist(tmp_path)) == 6


def test_fashion_class_names(tmp_path, synthetic):
    images, labels = synthetic
    write_split(tmp_path, "t10k", images, labels, gz=True)
    ds = load_fashion_mnist(tmp_path)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.class_names == FASHION_CLASSES and ds.name == "fashion-mnist-test"


def test_bad_magic(tmp_path, synthetic):
    images, labels = synthetic
    write_split(tmp_path, "t10k", images, labels, gz=False)
    # Labels written with the images magic: a swapped file must not be read as labels.
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(
        idx_bytes(labels, 2051)[:4] + idx_bytes(labels, 2049)[4:]
    )
    with pytest.raises(DataError, match=r"bad IDX magic number 2051, expected 2049"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_images(tmp_path, synthetic, gz):
    images, labels = synthetic
    write_split(tmp_path, "t10k", images, labels, gz=False)
    data = idx_bytes(images, 2051)[:-100]
    target = tmp_path / "t10k-images-idx3-ubyte"
    if gz:
        target.unlink()
        target = tmp_path / "t10k-images-idx3-ubyte.gz"
        data = gzip.compress(data)
    target.write_bytes(data)
    with pytest.raises(DataError, match="truncated"):
        load_mnist(tmp_path)


def test_truncated_gzip_stream(tmp_path, synthetic):
    images, labels = synthetic
    write_split(tmp_path, "t10k", images, labels, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="gzip"):
        load_mnist(tmp_path)


def test_count_mismatch(tmp_path, synthetic):
    images, labels = synthetic
    write_split(tmp_path, "t10k", images, labels[:5], gz=False)
    with pytest.raises(DataError, match="6 images but 5 labels"):
        load_mnist(tmp_path)


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=rf"{missing}.*does not exist.*IDX"):
        load_mnist(missing)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"missing t10k-images-idx3-ubyte\[\.gz\]"):
        load_mnist(tmp_path)


def test_bad_split(tmp_path):
    with pytest.raises(DataError, match="unknown split"):
        load_mnist(tmp_path, "validation")


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"shared data not present at {path}")
    return path


def test_real_mnist_test_set():
    root = _shared("mnist")
    start = time.perf_counter()
    ds = load_mnist(root, "test")
    seconds = time.perf_counter() - start
    assert ds.x.shape == (10000, 1, 28, 28) and ds.x.dtype == torch.float32
    assert int(ds.y[0]) == 7  # the canonical first t10k label
    assert int(ds.y.min()) == 0 and int(ds.y.max()) == 9
    assert torch.bincount(ds.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert seconds < 3.0, f"loading the MNIST test set took {seconds:.2f}s (budget: well under a second)"


def test_real_fashion_mnist_test_set():
    ds = load_fashion_mnist(_shared("fashion-mnist"), "test")
    assert ds.x.shape == (10000, 1, 28, 28)
    assert ds.class_names[int(ds.y[0])] == "Ankle boot"  # the first Fashion-MNIST test image
    assert torch.bincount(ds.y).tolist() == [1000] * 10
