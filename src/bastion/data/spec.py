"""One entry point from a dataset spec string (what the CLI passes) to a :class:`Dataset`."""

from __future__ import annotations

from bastion.data._util import check_split
from bastion.data.cifar10 import load_cifar10
from bastion.data.dataset import Dataset
from bastion.data.digits import load_digits
from bastion.data.faces import load_faces
from bastion.data.folder import load_folder
from bastion.data.idx import load_fashion_mnist, load_mnist
from bastion.data.npz import load_npz
from bastion.data.tabular import load_csv
from bastion.errors import DataError

__all__ = ["SPEC_FORMS", "load_dataset"]

SPEC_FORMS = (
    "digits",
    "mnist:DIR",
    "fashion-mnist:DIR",
    "cifar10:PATH",
    "faces:DIR",
    "npz:FILE",
    "folder:DIR",
    "csv:FILE (with label=COLUMN)",
)
_SPLIT_LOADERS = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "faces": load_faces,
}


def load_dataset(spec: str, *, split: str = "test", label: str | None = None) -> Dataset:
    """Load the dataset named by ``spec``; see ``SPEC_FORMS`` for the accepted forms.

    ``split`` ("train" or "test") picks the part for formats that have splits (digits, mnist,
    fashion-mnist, cifar10 directories, faces: 7 train / 3 test images per person, seeded); the others
    ignore it. ``label`` names the label column of a CSV file and is refused elsewhere, so a misplaced
    option is not silently dropped.
    """
    check_split(split)
    kind, sep, path = spec.partition(":")
    kind = kind.strip().lower()
    valid = "; valid forms: " + ", ".join(SPEC_FORMS)
    if kind not in {"digits", "npz", "folder", "csv", *_SPLIT_LOADERS}:
        raise DataError(f"unknown dataset spec {spec!r}{valid}")
    if label is not None and kind != "csv":
        raise DataError(f"label={label!r} only applies to csv:FILE datasets, not {kind!r}")
    if kind == "digits":
        if sep and path:
            raise DataError(f"'digits' ships with scikit-learn and takes no path (got {spec!r})")
        return load_digits(split)
    if not path:
        raise DataError(f"dataset spec {spec!r} needs a path after '{kind}:'{valid}")
    if kind in _SPLIT_LOADERS:
        return _SPLIT_LOADERS[kind](path, split)
    if kind == "npz":
        return load_npz(path)
    if kind == "folder":
        return load_folder(path)
    return load_csv(path, label)
