"""Dataset loaders: every format comes out as one :class:`Dataset` (float32 inputs inside ``bounds``).

``load_dataset(spec)`` takes the CLI's spec strings (``digits``, ``mnist:DIR``, ``cifar10:PATH``,
``npz:FILE``, ``folder:DIR``, ``csv:FILE`` ...); the per-format functions take paths. Nothing here
unpickles: archives are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from bastion.data.cifar10 import load_cifar10
from bastion.data.dataset import Dataset
from bastion.data.digits import load_digits
from bastion.data.folder import load_folder
from bastion.data.idx import load_fashion_mnist, load_idx, load_mnist
from bastion.data.npz import load_npz
from bastion.data.spec import SPEC_FORMS, load_dataset
from bastion.data.tabular import load_csv

__all__ = [
    "Dataset",
    "SPEC_FORMS",
    "load_cifar10",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_folder",
    "load_idx",
    "load_mnist",
    "load_npz",
]
