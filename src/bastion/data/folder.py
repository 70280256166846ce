"""A directory with one sub-folder of images per class (the ImageFolder layout), read with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bastion.data._util import existing_path
from bastion.data.dataset import Dataset
from bastion.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "load_folder"]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_folder(directory: str | Path) -> Dataset:
    """x (N, C, H, W) float32 in [0, 1] and y (N,) from ``directory/<class>/<image>``.

    Class names are the sorted sub-folder names (hidden ones skipped); images within a class are read
    in sorted order. Images are not resized: every image must have the same size, and the error names
    the first one that does not. All-greyscale folders give C = 1; any colour image makes every
    image RGB (C = 3). Needs Pillow (``pip install 'bastion[images]'``).
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise DataError("reading an image folder needs Pillow: pip install 'bastion[images]'") from exc

    root = existing_path(directory, "a directory with one sub-folder of images per class", directory=True)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders; expected {root}/<class name>/<image files>")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        images = _images_in(root / name)
        if not images:
            raise DataError(
                f"{root / name}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                "remove the folder or add images"
            )
        files.extend((p, label) for p in images)

    # First pass reads headers only (Pillow decodes lazily): check sizes, settle on one colour mode.
    size: tuple[int, int] | None = None
    first = files[0][0]
    grey = True
    for path, _ in files:
        try:
            with Image.open(path) as img:
                if size is None:
                    size = img.size
                elif img.size != size:
                    raise DataError(
                        f"{path}: image size {img.size[0]}x{img.size[1]} differs from {size[0]}x{size[1]} "
                        f"(first image {first}); all images must have the same size"
                    )
                grey = grey and img.mode in _GREY_MODES
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from exc
    mode = "L" if grey else "RGB"
    pixels = []
    for path, _ in files:
        with Image.open(path) as img:
            pixels.append(np.asarray(img.convert(mode), dtype=np.uint8))
    x = torch.from_numpy(np.stack(pixels)).to(torch.float32).div_(255.0)
    x = x.unsqueeze(1) if grey else x.permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([label for _, label in files], dtype=torch.long)
    return Dataset(
        x,
        y,
        num_classes=len(classes),
        bounds=(0.0, 1.0),
        class_names=tuple(classes),
        name=root.name,
        meta={"path": str(root), "mode": mode, "files": [str(p.relative_to(root)) for p, _ in files]},
    )
