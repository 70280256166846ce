"""Olivetti / AT&T (ORL) faces: 40 people, 10 greyscale images each, with a seeded per-person split.

The shared copy (``faces/`` beside the checkout, see its README) holds ``olivetti_faces.npz``
(scikit-learn's 64x64 crops, float32 in [0, 1]) and ``att_faces_112x92.npz`` (the original
112x92 PGM frames, uint8). Both store ``x`` (400, H, W) and ``y`` (400,) person ids, 10 per person.
These are the faces Fredrikson et al. (CCS 2015) inverted with MI-Face.

The data has no official split. ``load_faces`` fixes one: for every person, a permutation of that
person's images drawn from ``torch.Generator().manual_seed(seed)`` (one generator, persons in
order) puts the first ``train_per_person`` images (7 by default) in ``train`` and the rest (3) in
``test``. The two splits are disjoint and together hold every image; the same seed gives the same
split on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bastion.data._util import check_finite, check_split, existing_path, labels_from_array, read_npz
from bastion.data.dataset import Dataset
from bastion.errors import DataError

__all__ = ["FACES_FILES", "load_faces", "split_per_person"]

FACES_FILES = ("olivetti_faces.npz", "att_faces_112x92.npz")  # the first is the default


def split_per_person(y: torch.Tensor, train_per_person: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (ascending) of the train and test parts: ``train_per_person`` seeded picks per class.

    ``y`` (N,) int64. Every class needs more than ``train_per_person`` samples, so each person is in
    both parts. Raises DataError otherwise.
    """
    g = torch.Generator().manual_seed(seed)
    train: list[torch.Tensor] = []
    test: list[torch.Tensor] = []
    for person in torch.unique(y).tolist():
        members = torch.nonzero(y == person).flatten()
        if members.numel() <= train_per_person:
            raise DataError(
                f"person {person} has {members.numel()} images; a split with {train_per_person} training "
                "images per person needs more (lower train_per_person)"
            )
        order = members[torch.randperm(members.numel(), generator=g)]
        train.append(order[:train_per_person])
        test.append(order[train_per_person:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


def _images(x: np.ndarray, source: Path) -> torch.Tensor:
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise DataError(f"{source}: x has shape {x.shape}; expected (N, H, W) greyscale faces")
    if x.dtype == np.uint8:
        t = torch.from_numpy(np.array(x, dtype=np.float32)) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        check_finite(x, source)
        if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(f"{source}: float pixels must lie in [0, 1]")
        t = torch.from_numpy(np.array(x, dtype=np.float32))
    else:
        raise DataError(f"{source}: x has dtype {x.dtype}; expected uint8 pixels or floats in [0, 1]")
    return t.unsqueeze(1).contiguous()


def load_faces(path: str | Path, split: str = "test", *, train_per_person: int = 7, seed: int = 0) -> Dataset:
    """Faces as x (N, 1, H, W) float32 in [0, 1], y (N,) person ids, classes ``s1``..``s40``.

    ``path`` is the faces directory (reads ``olivetti_faces.npz``: 64x64) or one ``.npz`` with
    ``x`` (N, H, W) and ``y`` (e.g. ``att_faces_112x92.npz``: 112x92 uint8). ``split`` picks the
    seeded per-person part (see the module docstring): 7 train / 3 test images per person by default.
    """
    check_split(split)
    if train_per_person < 1:
        raise DataError(f"train_per_person must be >= 1, got {train_per_person}")
    root = existing_path(path, "the faces directory or a faces .npz file")
    source = root / FACES_FILES[0] if root.is_dir() else root
    if not source.is_file():
        raise DataError(f"{root}: no {FACES_FILES[0]}; pass the faces directory or one of {FACES_FILES}")
    arrays = read_npz(source, ("x", "y"))
    x = _images(arrays["x"], source)
    y = labels_from_array(arrays["y"], x.shape[0], source)
    num_classes = int(y.max()) + 1 if y.numel() else 1
    train, test = split_per_person(y, train_per_person, seed)
    index = train if split == "train" else test
    return Dataset(
        x[index],
        y[index],
        num_classes=num_classes,
        bounds=(0.0, 1.0),
        class_names=tuple(f"s{k + 1}" for k in range(num_classes)),
        name=f"faces-{split}",
        meta={
            "path": str(source),
            "split": split,
            "train_per_person": train_per_person,
            "split_seed": seed,
            "indices": index.tolist(),
        },
    )
