"""Median smoothing (Xu, Evans & Qi 2018, "Feature Squeezing: Detecting Adversarial Examples in Deep
Neural Networks", NDSS).

Each channel is filtered with a ``size x size`` sliding median. The conventions are the paper's
(``scipy.ndimage.median_filter(x, size, mode="reflect")``, which its TensorFlow port imitates):

- edges are padded symmetrically (the border pixel repeated: ``d c b a | a b c d | d c b a``);
- an even window has its extra row/column at the start: a 2x2 window covers rows ``i-1, i`` and
  columns ``j-1, j`` (the image is padded at the top and left);
- an even number of values gives the upper of the two middle values (no averaging).

The output is a selection of input values, so it is piecewise linear in ``x`` and its torch gradient
is the true one: BPDA back-propagates through the filter itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from bastion.defenses.transforms.base import DefenseError, Transform, check_images
from bastion.errors import DataError

__all__ = ["MedianSmoothing"]


def _symmetric_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-``n`` axis padded symmetrically by ``before`` and ``after`` positions."""
    i = torch.arange(-before, n + after, device=device)
    i = torch.where(i < 0, -i - 1, i)
    return torch.where(i >= n, 2 * n - i - 1, i)


@dataclass(frozen=True)
class MedianSmoothing(Transform):
    """Sliding ``size x size`` median per channel of images (N, C, H, W); ``size`` >= 1 (1: identity).

    Xu et al. use 2 (MNIST, CIFAR-10) and 3 (ImageNet). Deterministic.
    """

    size: int = 2
    name: ClassVar[str] = "median"
    differentiable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= 15:
            raise DefenseError(f"median size must be an integer from 1 to 15, got {self.size!r}")

    def _apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(x, "median smoothing")
        k = self.size
        if k == 1:
            return x
        n, c, h, w = x.shape
        if k - 1 > min(h, w):
            raise DataError(f"median size {k} is too large for {h}x{w} images; use at most {min(h, w) + 1}")
        after = (k - 1) // 2
        before = k - 1 - after  # scipy puts the extra padding at the start
        rows = _symmetric_index(h, before, after, x.device)
        cols = _symmetric_index(w, before, after, x.device)
        padded = x[:, :, rows][:, :, :, cols]
        windows = padded.unfold(2, k, 1).unfold(3, k, 1).reshape(n, c, h, w, k * k)
        return windows.kthvalue(k * k // 2 + 1, dim=-1).values

    def spec(self) -> str:
        return f"median:{self.size}"
