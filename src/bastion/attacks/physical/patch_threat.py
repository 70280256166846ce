"""The patch threat: one visible patch pasted on the image under random scale, rotation, position and
brightness (Brown, Mané, Roy, Abadi & Gilmer, "Adversarial Patch", 2017, the transformation
distribution ``T`` of their Expectation over Transformation).

Geometry (pixel units, x right, y down, pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``):

- At scale 1 the patch covers ``area * H * W`` pixels: a square of side ``sqrt(area * H * W)`` or a
  disc of the same area. Scale multiplies the side (the covered area grows as ``scale ** 2``).
- ``angle`` in degrees rotates the patch about its centre (positive: counter-clockwise as displayed);
  ``brightness`` multiplies its pixel values before clipping to ``bounds``.
- The mask is anti-aliased: each pixel's coverage, a one-pixel linear ramp across the patch's edge, so at
  rotation 0 its sum is exactly the patch's area. Pixels where the mask is 0 are returned unchanged, bit
  for bit.
- Centres are drawn so that the whole patch (its edge ramp included) lies inside the image.
  ``locations="corners"`` pushes it into one of the four corners, ``"center"`` puts it at the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from bastion.errors import DataError, ThreatModelError
from bastion.threat import Bounds, check_bounds

__all__ = ["PatchPlacement", "PatchThreat"]

Shape = Literal["square", "circle"]
Locations = Literal["anywhere", "corners", "center"]
_SHAPES = ("square", "circle")
_LOCATIONS = ("anywhere", "corners", "center")
# Outside the training distribution (``sample(..., outside=True)``): scales in [0.7 lo, lo) or
# (hi, 1.3 hi] (capped at what fits), angles 0-30 degrees beyond the limit, brightness in [0.8 lo, lo) or
# (hi, 1.2 hi]; corners <-> centre. "anywhere" has no unseen location.
_OUT_SCALE, _OUT_ANGLE, _OUT_BRIGHT = 0.3, 30.0, 0.2


@dataclass(frozen=True)
class PatchPlacement:
    """One placement per input: ``centre`` (n, 2) in pixels (x, y), ``scale`` (n,), ``angle`` (n,)
    in degrees, ``brightness`` (n,) multiplicative."""

    centre: torch.Tensor
    scale: torch.Tensor
    angle: torch.Tensor
    brightness: torch.Tensor

    def __len__(self) -> int:
        return int(self.scale.shape[0])

    def subset(self, index: slice | torch.Tensor) -> PatchPlacement:
        """The placements at ``index`` (a slice or an index tensor)."""
        return PatchPlacement(
            self.centre[index], self.scale[index], self.angle[index], self.brightness[index]
        )

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> PatchPlacement:
        c, s, a, b = (
            t.to(device=device, dtype=dtype) for t in (self.centre, self.scale, self.angle, self.brightness)
        )
        return PatchPlacement(c, s, a, b)


def _range(name: str, value: tuple[float, float], *, positive: bool) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ThreatModelError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or (positive and lo <= 0):
        raise ThreatModelError(f"{name} must be finite, positive and ordered (low <= high), got {value!r}")
    return (lo, hi)


def _spread(angle_deg: float) -> float:
    """Largest half-width factor ``|cos| + |sin|`` of a square rotated by up to ``angle_deg``."""
    return (
        math.sqrt(2.0)
        if angle_deg >= 45
        else math.cos(math.radians(angle_deg)) + math.sin(math.radians(angle_deg))
    )


@dataclass(frozen=True)
class PatchThreat:
    """A patch covering ``area`` of the image at scale 1, of ``shape`` square or circle, drawn at scales in
    ``scale`` (times the nominal side), angles in ``[-rotation, rotation]`` degrees, brightness factors in
    ``brightness``, centres at ``locations``; images inside ``bounds``."""

    area: float = 0.05
    shape: Shape = "square"
    scale: tuple[float, float] = (0.8, 1.2)
    rotation: float = 20.0
    brightness: tuple[float, float] = (0.9, 1.1)
    locations: Locations = "anywhere"
    bounds: Bounds = (0.0, 1.0)

    def __post_init__(self) -> None:
        a = self.area
        if isinstance(a, bool) or not isinstance(a, int | float) or not (0 < a <= 0.5):
            raise ThreatModelError(f"area is the share of the image the patch covers, in (0, 0.5]; got {a!r}")
        if self.shape not in _SHAPES:
            raise ThreatModelError(f"unknown patch shape {self.shape!r}; use one of: {', '.join(_SHAPES)}")
        if self.locations not in _LOCATIONS:
            raise ThreatModelError(
                f"unknown locations {self.locations!r}; use one of: {', '.join(_LOCATIONS)}"
            )
        r = self.rotation
        if isinstance(r, bool) or not isinstance(r, int | float) or not (0 <= r <= 180):
            raise ThreatModelError(f"rotation is the largest angle in degrees, in [0, 180]; got {r!r}")
        object.__setattr__(self, "area", float(a))
        object.__setattr__(self, "rotation", float(r))
        object.__setattr__(self, "scale", _range("scale", self.scale, positive=True))
        object.__setattr__(self, "brightness", _range("brightness", self.brightness, positive=True))
        object.__setattr__(self, "bounds", check_bounds(self.bounds))

    def side(self, image_hw: tuple[int, int]) -> float:
        """The patch's nominal side in pixels (a disc's diameter) at scale 1."""
        px = self.area * image_hw[0] * image_hw[1]
        return math.sqrt(px) if self.shape == "square" else 2.0 * math.sqrt(px / math.pi)

    def patch_shape(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) texels of a patch for images of ``image_hw``: its nominal side, rounded (at least 1)."""
        n = max(1, round(self.side(image_hw)))
        return (n, n)

    def _extent(self, half: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Half-width of the axis-aligned box around the patch (edge ramp included), pixels."""
        if self.shape == "circle":
            return half + 0.5
        rad = angle * (math.pi / 180.0)
        return half * (rad.cos().abs() + rad.sin().abs()) + 0.5

    def check_fits(self, image_hw: tuple[int, int], *, max_scale: float | None = None) -> None:
        """Refuse a patch that cannot fit the image at the largest scale and worst angle."""
        h, w = image_hw
        s = self.scale[1] if max_scale is None else max_scale
        spread = 1.0 if self.shape == "circle" else _spread(self.rotation)
        need = 2 * (self.side(image_hw) * s / 2 * spread + 0.5)
        if need > min(h, w):
            raise ThreatModelError(
                f"a {self.shape} patch of area {self.area:g} at scale {s:g} needs {need:.1f} px but the "
                f"image is {h}x{w}: lower area or the largest scale"
            )

    def sample(
        self, n: int, image_hw: tuple[int, int], generator: torch.Generator, *, outside: bool = False
    ) -> PatchPlacement:
        """``n`` placements for images of ``image_hw`` (H, W), drawn only from ``generator`` (on its device).

        ``outside=True`` draws transformations beyond the training ranges (and, for corners/centre
        training, the other locations): the unseen-placement protocol of :meth:`PatchResult.evaluate`.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"n must be a positive number of placements, got {n!r}")
        self.check_fits(image_hw)
        dev = generator.device
        u = torch.rand(n, 6, generator=generator, device=dev, dtype=torch.float64)
        lo, hi = self.scale
        b_lo, b_hi = self.brightness
        sign = torch.where(u[:, 5] < 0.5, -1.0, 1.0).to(u)
        if not outside:
            angle = (2 * u[:, 1] - 1) * self.rotation
            brightness = b_lo + u[:, 2] * (b_hi - b_lo)
        else:
            angle = sign * (self.rotation + u[:, 1] * min(_OUT_ANGLE, 180.0 - self.rotation))
            above = u[:, 2] < 0.5
            brightness = torch.where(
                above, b_hi * (1 + u[:, 2] * 2 * _OUT_BRIGHT), b_lo * (1 - (u[:, 2] - 0.5) * 2 * _OUT_BRIGHT)
            )
        side = self.side(image_hw)
        h, w = image_hw
        if not outside:
            scale = lo + u[:, 0] * (hi - lo)
        else:
            # the largest scale at this angle that still fits; fall back to the band below when it is <= hi
            rad = angle * (math.pi / 180.0)
            spread = torch.ones_like(angle) if self.shape == "circle" else rad.cos().abs() + rad.sin().abs()
            cap = ((min(h, w) - 1.0) / (side * spread)).clamp(max=hi * (1 + _OUT_SCALE))
            up = (u[:, 0] < 0.5) & (cap > hi)
            t = (u[:, 0] % 0.5) * 2
            scale = torch.where(up, hi + (1 - t) * (cap - hi), lo * (1 - t * _OUT_SCALE)).minimum(cap)
        ext = self._extent(scale * side / 2, angle)
        where: str = self.locations
        if outside:
            where = {"anywhere": "anywhere", "corners": "center", "center": "corners"}[self.locations]
        if where == "anywhere":
            cx = ext + u[:, 3] * (w - 2 * ext)
            cy = ext + u[:, 4] * (h - 2 * ext)
        elif where == "corners":
            cx = torch.where(u[:, 3] < 0.5, ext, w - ext)
            cy = torch.where(u[:, 4] < 0.5, ext, h - ext)
        else:
            cx, cy = torch.full_like(ext, w / 2), torch.full_like(ext, h / 2)
        f = torch.float32
        return PatchPlacement(torch.stack([cx, cy], 1).to(f), scale.to(f), angle.to(f), brightness.to(f))

    def apply(
        self, x: torch.Tensor, patch: torch.Tensor, placement: PatchPlacement
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, C, H, W) with ``patch`` (C, h, w) rendered at ``placement`` (N placements); returns
        ``(x_patched, mask)`` with ``mask`` (N, 1, H, W) in [0, 1] (the patch's coverage of each pixel).

        ``x_patched`` equals ``x`` exactly where ``mask == 0``; elsewhere it blends ``x`` with the
        transformed patch (bilinear, border padding) times its brightness, clipped to ``bounds``.
        Differentiable in ``patch``; ``x`` and ``patch`` are never mutated; works on ``x.device``.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"x must be a floating-point image batch (N, C, H, W), got {shape}")
        if not isinstance(patch, torch.Tensor) or patch.dim() != 3 or patch.shape[0] != x.shape[1]:
            shape = tuple(patch.shape) if isinstance(patch, torch.Tensor) else type(patch).__name__
            raise DataError(f"patch must be (C, h, w) with C={x.shape[1]} like x, got {shape}")
        if len(placement) != x.shape[0]:
            raise DataError(f"{len(placement)} placements for {x.shape[0]} images; give one per image")
        n, c, h, w = x.shape
        low, high = self.bounds
        p = placement.to(x.device, x.dtype)
        half = p.scale * (self.side((h, w)) / 2)  # (n,) half side in pixels
        need = float(2 * self._extent(half, p.angle).max())
        if need > min(h, w) + 1e-4:
            raise ThreatModelError(
                f"a {self.shape} patch of area {self.area:g} at scale {float(p.scale.max()):g} needs "
                f"{need:.1f} px but the image is {h}x{w}: lower area or the scales"
            )
        rad = p.angle * (math.pi / 180.0)
        cos, sin = rad.cos(), rad.sin()
        # Normalised output coords o (align_corners=False) are pixels q = D (o + 1), D = diag(W/2, H/2).
        # The patch frame is R^T (q - centre) / half with R = [[cos, sin], [-sin, cos]] (counter-clockwise
        # on screen, y down), so theta = [R^T D / half | R^T (D 1 - centre) / half].
        ax, ay = w / 2.0, h / 2.0
        dx, dy = ax - p.centre[:, 0], ay - p.centre[:, 1]
        theta = torch.stack(
            [
                torch.stack([cos * ax, -sin * ay, cos * dx - sin * dy], 1),
                torch.stack([sin * ax, cos * ay, sin * dx + cos * dy], 1),
            ],
            1,
        ) / half.view(-1, 1, 1)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)  # (n, H, W, 2) patch coords
        hv = half.view(-1, 1, 1)
        if self.shape == "square":
            cover = (hv.unsqueeze(-1) * (1 - grid.abs()) + 0.5).clamp(0, 1)
            mask = cover[..., 0] * cover[..., 1]
        else:
            mask = (hv * (1 - grid.norm(dim=-1)) + 0.5).clamp(0, 1)
        mask = mask.unsqueeze(1)
        texture = patch.to(x.dtype).unsqueeze(0).expand(n, -1, -1, -1)
        rendered = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)
        rendered = (rendered * p.brightness.view(-1, 1, 1, 1)).clamp(low, high)
        blended = (x * (1 - mask) + rendered * mask).clamp(low, high)
        return torch.where(mask > 0, blended, x), mask
