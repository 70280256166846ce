"""``Normalize``: the input normalisation layer interval bound propagation follows exactly.

Putting ``Normalize(mean, std)`` first in an ``nn.Sequential`` is the same as giving the mean and
standard deviation to :class:`bastion.model.TorchClassifier`: IBP bounds it as the per-channel affine
map it is. (A normalisation module of your own is accepted too when its ``forward`` is a chain of
elementwise additions, subtractions, multiplications and divisions by constants; see
``docs/certify.md``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bastion.errors import ModelContractError

__all__ = ["Normalize"]

Stat = float | Sequence[float] | torch.Tensor


def _stat(name: str, value: Stat) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise ModelContractError(f"Normalize: {name} must be finite numbers, got {value!r}")
    if t.dim() == 1:  # per channel, as TorchClassifier reads mean/std: (1, C, 1, 1), or (1,) for one value
        t = t.view(1, -1, 1, 1) if t.numel() > 1 else t.view(1)
    return t


class Normalize(nn.Module):
    """``(x - mean) / std``, per channel: a float or one value per channel (image inputs (N, C, H, W)),
    or a tensor that broadcasts against the input. ``std`` must be positive."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Stat, std: Stat) -> None:
        super().__init__()
        mean_t, std_t = _stat("mean", mean), _stat("std", std)
        if bool((std_t <= 0).any()):
            raise ModelContractError(f"Normalize: std must be positive in every channel, got {std!r}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
