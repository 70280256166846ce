"""MNIST-style IDX files (MNIST, Fashion-MNIST), gzipped or raw, parsed with numpy.

Format (big-endian): a 4-byte magic ``0x0000 <dtype> <ndim>`` (2051 for uint8 images of 3 dims,
2049 for uint8 labels of 1 dim), ``ndim`` 4-byte sizes, then the data row-major.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from bastion.data._util import check_split, count_classes, existing_path, labels_from_array, uint8_to_float
from bastion.data.dataset import Dataset
from bastion.errors import DataError

__all__ = ["load_fashion_mnist", "load_idx", "load_mnist", "read_idx"]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """The uint8 array stored in an IDX file, shaped by its header; gzip is detected from the bytes."""
    p = Path(path)
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{p}: corrupt or truncated gzip stream ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{p}: truncated IDX file ({len(raw)} bytes, no header)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{p}: bad IDX magic number {found}, expected {magic} for {kind}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{p}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{p}: IDX data holds {len(raw) - header} bytes but the header {shape} says {expected}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    # Distributions differ: "t10k-images-idx3-ubyte" vs "t10k-images.idx3-ubyte", gzipped or not.
    names = [stem, stem.replace("-idx", ".idx")]
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{directory}: missing {stem}[.gz]; expected an MNIST-style IDX directory")


def load_idx(
    directory: str | Path,
    split: str = "test",
    *,
    name: str = "idx",
    class_names: tuple[str, ...] = (),
) -> Dataset:
    """Images x (N, 1, H, W) float32 in [0, 1] and labels y (N,) from an IDX directory."""
    check_split(split)
    root = existing_path(directory, f"a directory of {name} IDX files", directory=True)
    prefix = _PREFIX[split]
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{root}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split")
    y = labels_from_array(labels, images.shape[0], labels_path)
    num_classes = count_classes(y, class_names)
    return Dataset(
        uint8_to_float(images).unsqueeze(1),
        y,
        num_classes=num_classes,
        bounds=(0.0, 1.0),
        class_names=class_names,
        name=f"{name}-{split}",
        meta={"path": str(root), "split": split, "files": [str(images_path), str(labels_path)]},
    )


def load_mnist(directory: str | Path, split: str = "test") -> Dataset:
    """MNIST (digits 0-9, 28x28 grey) from a directory of IDX files."""
    return load_idx(directory, split, name="mnist", class_names=tuple(str(i) for i in range(10)))


def load_fashion_mnist(directory: str | Path, split: str = "test") -> Dataset:
    """Fashion-MNIST (10 clothing classes, 28x28 grey) from a directory of IDX files."""
    return load_idx(directory, split, name="fashion-mnist", class_names=FASHION_CLASSES)
