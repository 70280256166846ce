"""Random resizing and padding (Xie, Wang, Zhang, Ren & Yuille 2018, "Mitigating Adversarial Effects
Through Randomization", ICLR).

Xie et al. resize a W x W image to a random ``r x r`` with ``W <= r < S`` (299 -> [299, 331) on
ImageNet, ``S / W = 1.107``), then pad it with zeros at a random offset to ``S x S``. Here the canvas
is resampled back to the input size so the model sees its own input shape; the three steps (resize,
pad, resize back) compose into one affine resampling per sample, done in one ``grid_sample`` call:

- scale ``f ~ U[1, max_size_ratio]`` (the paper's ``r / W``, continuous; aspect ratio kept),
- offset ``t ~ U[0, 1]`` per axis: the fraction of the free margin ``S - f W`` left before the image,
- the image then covers ``f / max_size_ratio`` of the output, the rest is the lower bound (zero padding).

Every sample gets its own draw from the generator. For a fixed draw the transform is linear in ``x``,
so torch's gradient is exact and BPDA back-propagates through it; EOT averages over draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bastion.defenses.transforms.base import DefenseError, Transform, check_images

__all__ = ["RandomResizePad"]

_MODES = ("bilinear", "nearest")


@dataclass(frozen=True)
class RandomResizePad(Transform):
    """Randomly shrink images (N, C, H, W) into a larger zero-padded canvas, resampled to (H, W).

    ``max_size_ratio`` > 1 is the canvas size over the input size (Xie et al.: 331 / 299 = 1.107; the
    default 1.25 suits small images, where 1.107 moves less than a pixel). ``mode``: ``"bilinear"``
    or ``"nearest"`` (the paper's resize). Randomised: the output depends on the generator.
    """

    max_size_ratio: float = 1.25
    mode: str = "bilinear"
    name: ClassVar[str] = "resize-pad"
    randomized: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        ratio = self.max_size_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio):
            raise DefenseError(f"max_size_ratio must be a number > 1, got {ratio!r}")
        if not 1.0 < ratio <= 4.0:
            raise DefenseError(f"max_size_ratio must be in (1, 4], got {ratio!r} (Xie et al. use 1.107)")
        if self.mode not in _MODES:
            raise DefenseError(f"unknown resize mode {self.mode!r}; use one of: {', '.join(_MODES)}")

    def _apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(x, "random resize-pad")
        n = x.shape[0]
        u = torch.rand(n, 3, generator=generator, device=generator.device, dtype=torch.float64)
        u = u.to(x.device)
        scale = 1.0 + (self.max_size_ratio - 1.0) * u[:, 0]
        a = self.max_size_ratio / scale  # output -> input zoom per axis, in [1, max_size_ratio]
        b = (a - 1.0)[:, None] * (1.0 - 2.0 * u[:, 1:])  # (N, 2): x and y shifts
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = a
        theta[:, 1, 1] = a
        theta[:, :, 2] = b
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="zeros", align_corners=False)

    def spec(self) -> str:
        return f"resize-pad:{self.max_size_ratio:g}"
