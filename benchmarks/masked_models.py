"""Gradient-masked versions of zoo:digits-cnn, as model factories for `bastion audit` (bench_audit.py).

bastion audit benchmarks/masked_models.py:quantised digits --out report
"""

from __future__ import annotations

import torch
from torch import nn

from bastion import zoo


class Quantised(nn.Module):
    """Rounds inputs to 8 grey levels first: zero gradients almost everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 7) / 7)


class Saturated(nn.Module):
    """Returns softmax(1000 * logits): probabilities that are exactly 0 or 1, so gradients vanish."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(1000 * self.net(x), dim=1)


class Shattered(nn.Module):
    """Adds 0.02 * sin(2000 x) to the input: nearly the same function, gradients dominated by noise."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.02 * torch.sin(2000 * x))


def _digits_cnn() -> nn.Module:
    return zoo.load("digits-cnn").module


def quantised() -> nn.Module:
    return Quantised(_digits_cnn())


def saturated() -> nn.Module:
    return Saturated(_digits_cnn())


def shattered() -> nn.Module:
    return Shattered(_digits_cnn())
