"""The spatial threat: rotations and translations within set ranges, and the transform that renders them.

Engstrom, Tran, Tsipras, Schmidt & Madry, "Exploring the Landscape of Spatial Robustness" (ICML 2019):
the adversary rotates an image by up to ``max_rotation`` degrees and translates it by up to
``max_translation`` of its side (their CIFAR-10 setting: 30 degrees and 3 px of 32, about 0.1), filling
the uncovered area with black (zero padding).

Conventions of :func:`spatial_transform` (params (N, 3) = ``(angle, tx, ty)``):

- ``angle`` in degrees; positive rotates **counter-clockwise as displayed** (row 0 at the top), about
  the image centre, so ``angle=90`` on a square image equals ``torch.rot90(x, 1, dims=(-2, -1))``.
- ``tx``, ``ty`` are fractions of the width and height; positive ``tx`` moves the content right,
  positive ``ty`` moves it down. ``tx = k / W`` is an exact shift by ``k`` pixels.
- The image is rotated first, then translated. Rotation happens in pixel units, so a non-square image
  is rotated without shear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bastion.errors import DataError, ThreatModelError
from bastion.threat import Bounds, check_bounds

__all__ = ["SpatialThreat", "spatial_transform"]


@dataclass(frozen=True)
class SpatialThreat:
    """Rotations in ``[-max_rotation, max_rotation]`` degrees and translations in
    ``[-max_translation, max_translation]`` (fraction of the side) per axis, images inside ``bounds``."""

    max_rotation: float = 30.0
    max_translation: float = 0.1
    bounds: Bounds = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("max_rotation", "max_translation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ThreatModelError(f"{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ThreatModelError(f"{name} must be >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.max_rotation > 180:
            raise ThreatModelError(
                f"max_rotation must be <= 180 degrees (a full turn either way), got {self.max_rotation!r}"
            )
        if self.max_translation >= 1:
            raise ThreatModelError(
                f"max_translation must be < 1 (a fraction of the image side), got {self.max_translation!r}"
            )
        object.__setattr__(self, "bounds", check_bounds(self.bounds))

    def _limits(self, params: torch.Tensor) -> torch.Tensor:
        t = self.max_translation
        return torch.tensor([self.max_rotation, t, t], dtype=params.dtype, device=params.device)

    def clamp(self, params: torch.Tensor) -> torch.Tensor:
        """``params`` (N, 3) projected into the ranges (a new tensor; differentiable inside them)."""
        _check_params(params)
        limit = self._limits(params)
        return torch.maximum(torch.minimum(params, limit), -limit)

    def contains(self, params: torch.Tensor, *, atol: float = 1e-6) -> torch.Tensor:
        """(N,) bool: whether each row of ``params`` (N, 3) lies inside the ranges (up to ``atol``)."""
        _check_params(params)
        return (params.abs() <= self._limits(params) + atol).all(dim=1)

    def sample(
        self, n: int, generator: torch.Generator, *, device: torch.device | None = None
    ) -> torch.Tensor:
        """(n, 3) params drawn uniformly in the ranges from ``generator`` (which must live on ``device``)."""
        u = torch.rand(n, 3, generator=generator, device=device)
        return (2 * u - 1) * self._limits(u)


def _check_params(params: torch.Tensor) -> None:
    if not isinstance(params, torch.Tensor) or params.dim() != 2 or params.shape[1] != 3:
        shape = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
        raise DataError(f"params must be a tensor (N, 3) of (angle, tx, ty), got {shape}")


def spatial_transform(x: torch.Tensor, params: torch.Tensor, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
    """Rotate each image of ``x`` (N, C, H, W) by ``params[:, 0]`` degrees, then translate it by
    ``(params[:, 1] * W, params[:, 2] * H)`` pixels; returns a new (N, C, H, W) tensor.

    Bilinear sampling (``grid_sample``, ``align_corners=False``); pixels that come from outside the image
    are filled with ``bounds[0]`` (the paper's zero padding, "black" for any bounds). The output is
    clipped to ``bounds``. Differentiable in ``x`` and ``params``; ``x`` is never mutated; works on
    ``x.device`` (``params`` is moved there and cast to ``x.dtype``).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"x must be a floating-point image batch (N, C, H, W), got {shape}")
    _check_params(params)
    if params.shape[0] != x.shape[0]:
        raise DataError(
            f"params has {params.shape[0]} rows but x has {x.shape[0]} images; give one per image"
        )
    low, high = check_bounds(bounds)
    n, _, h, w = x.shape
    p = params.to(device=x.device, dtype=x.dtype)
    rad = p[:, 0] * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Pixel coordinates (x right, y down) relate to normalised ones by p = D n, D = diag(W/2, H/2).
    # Output = R(angle) input + t, so the grid samples input = R^T (output - t); in normalised units the
    # linear part is D^-1 R^T D and the offset -D^-1 R^T t. R = [[cos, sin], [-sin, cos]] turns the
    # content counter-clockwise on screen (y points down).
    ax, ay = w / 2.0, h / 2.0
    tx, ty = p[:, 1] * w, p[:, 2] * h
    # R^T = [[cos, -sin], [sin, cos]]
    theta = torch.stack(
        [
            torch.stack([cos, -sin * ay / ax, -(cos * tx - sin * ty) / ax], dim=1),
            torch.stack([sin * ax / ay, cos, -(sin * tx + cos * ty) / ay], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    out = F.grid_sample(x - low, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + low
    return out.clamp(low, high)
