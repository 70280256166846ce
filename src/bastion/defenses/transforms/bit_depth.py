"""Bit-depth reduction (Xu, Evans & Qi 2018, "Feature Squeezing: Detecting Adversarial Examples in Deep
Neural Networks", NDSS).

Each value, rescaled to [0, 1], is rounded to one of ``2**bits`` evenly spaced levels:
``round(x * (2**bits - 1)) / (2**bits - 1)`` (the paper's ``reduce_precision``). Rounding has a zero
gradient almost everywhere, which is why naive gradient attacks fail on it; BPDA uses the identity
as the backward pass (Athalye et al. 2018), which is exact up to the quantisation error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from bastion.defenses.transforms.base import DefenseError, Transform

__all__ = ["BitDepth"]


@dataclass(frozen=True)
class BitDepth(Transform):
    """Round every value to ``2**bits`` levels of its bounds; works on any shape (N, ...).

    ``bits`` in 1..16 (Xu et al. use 1 for MNIST, 4-5 for CIFAR-10 and ImageNet). Deterministic.
    """

    bits: int = 4
    name: ClassVar[str] = "bits"

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise DefenseError(f"bits must be an integer from 1 to 16, got {self.bits!r}")

    def _apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        levels = float(2**self.bits - 1)
        return torch.round(x * levels) / levels

    def spec(self) -> str:
        return f"bits:{self.bits}"
