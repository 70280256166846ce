"""The one dataset type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.errors import DataError
from bastion.threat import Bounds, check_bounds

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (N, C, H, W) for images or (N, D) for tabular data, float32 inside ``bounds``;
    labels ``y`` (N,) int64 in [0, num_classes)."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    bounds: Bounds = (0.0, 1.0)
    class_names: tuple[str, ...] = ()
    name: str = "dataset"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bounds", check_bounds(self.bounds))
        if not isinstance(self.x, torch.Tensor) or not self.x.is_floating_point():
            raise DataError(f"{self.name}: x must be a floating-point tensor")
        if self.x.dim() < 2:
            raise DataError(f"{self.name}: x must have shape (N, ...), got {tuple(self.x.shape)}")
        if self.y.dim() != 1 or self.y.shape[0] != self.x.shape[0]:
            raise DataError(f"{self.name}: y must have shape ({self.x.shape[0]},), got {tuple(self.y.shape)}")
        if self.y.dtype != torch.long:
            object.__setattr__(self, "y", self.y.long())
        if self.num_classes < 1:
            raise DataError(f"{self.name}: num_classes must be >= 1")
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise DataError(f"{self.name}: labels must lie in [0, {self.num_classes})")
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(str(i) for i in range(self.num_classes)))
        elif len(self.class_names) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: torch.Tensor | slice) -> Dataset:
        return Dataset(
            self.x[index],
            self.y[index],
            self.num_classes,
            self.bounds,
            self.class_names,
            self.name,
            self.meta,
        )

    def take(self, limit: int | None, *, seed: int = 0) -> Dataset:
        """The first ``limit`` samples of a fixed seeded shuffle (all of them when ``limit`` is None)."""
        index = self.take_indices(limit, seed=seed)
        return self if index is None else self.subset(index)

    def take_indices(self, limit: int | None, *, seed: int = 0) -> torch.Tensor | None:
        """The indices (ascending) :meth:`take` keeps, or None when it keeps everything; for subsetting
        per-sample arrays kept beside the dataset (ground truth, scores) alike."""
        if limit is None or limit >= len(self):
            return None
        if limit < 1:
            raise DataError(f"limit must be >= 1, got {limit}")
        g = torch.Generator().manual_seed(seed)
        return torch.randperm(len(self), generator=g)[:limit].sort().values
