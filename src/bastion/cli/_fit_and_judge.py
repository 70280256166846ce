"""What ``bastion patch`` and ``bastion universal`` share: a pattern fitted on the training split and judged
on held-out test images, and the pattern written as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bastion.cli.common import err, load_inputs
from bastion.errors import DataError

if TYPE_CHECKING:
    from bastion.data import Dataset


def check_png(path: Path | None) -> None:
    """Refuse an ``--out`` that is not a .png before anything loads."""
    if path is not None and path.suffix.lower() != ".png":
        raise DataError(f"--out writes a PNG image: name it *.png, not {path.name}")


def load_fit_and_test(model: str, data: str, *, fit: int, label: str | None, limit: int | None, seed: int,
                      **options: Any) -> tuple[Any, Dataset, Dataset]:  # fmt: skip
    """(classifier, ``fit`` seeded training images, ``limit`` seeded test images), images only; the two
    subsets are drawn with different seeds, from different splits."""
    from bastion.data import load_dataset

    clf, test = load_inputs(model, data, split="test", label=label, limit=limit, seed=seed, **options)
    if test.x.dim() != 4:
        raise DataError(
            f"this attack works on images (N, C, H, W); {test.name} holds {tuple(test.x.shape[1:])}"
        )
    train = load_dataset(data, split="train", label=label).take(fit, seed=seed + 1)
    return clf, train, test


def write_png(path: Path, image: torch.Tensor, bounds: tuple[float, float], what: str) -> None:
    """``image`` (C, h, w) inside ``bounds`` as a PNG at ``path`` (enlarged, nearest), atomically."""
    from bastion._files import atomic_write
    from bastion.audit.sections.physical import patch_png

    png = patch_png(image.detach().cpu(), bounds)
    atomic_write(path, lambda fh: fh.write(png), "wb")
    err.print(f"{what} written to {path}")
