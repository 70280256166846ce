"""Backdoor triggers: a per-pixel weight ``mask`` and a ``pattern``: x' = (1 - mask) x + mask pattern.

- :class:`PatchTrigger`: BadNets (Gu et al. 2017, "BadNets: Identifying Vulnerabilities in the Machine
  Learning Model Supply Chain"): a small square stamped into the image; mask 1 inside, 0 outside.
- :class:`BlendTrigger`: Chen et al. 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
  Poisoning": a whole-image pattern blended in with weight ``alpha``; mask ``alpha`` everywhere.

One formula for both lets detectors and benchmarks compare a recovered (mask, pattern) with the truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bastion.errors import AttackError, DataError
from bastion.threat import Bounds, check_bounds

__all__ = ["BlendTrigger", "POSITIONS", "PatchTrigger", "Trigger"]

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
PATCH_PATTERNS = ("checkerboard", "white", "black")


def _share(name: str, value: float) -> float:
    """``value`` as a float in (0, 1]; AttackError otherwise."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) <= 1.0:
        raise AttackError(f"{name} must lie in (0, 1], got {value!r}")
    return float(value)


def _pattern_tensor(pattern: torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(pattern).detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise AttackError(f"{name} pattern holds NaN or infinite values")
    return t


class Trigger(ABC):
    """Base of every trigger. ``apply(x)`` never mutates ``x``; its result has x's device and dtype."""

    kind: ClassVar[str] = "trigger"

    @abstractmethod
    def mask(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Weight of the pattern per input element, in [0, 1], shape ``shape`` (C, H, W), float32 on CPU."""

    @abstractmethod
    def pattern(self, shape: tuple[int, ...], bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
        """The pattern (inside ``bounds``), shape ``shape``, float32 on CPU; only read where mask > 0."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-ready description (``kind`` plus hyperparameters; a tensor pattern reads ``"custom"``)."""

    def apply(self, x: torch.Tensor, bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
        """``x`` (N, ...) with the trigger in: (1 - mask) * x + mask * pattern, clipped to ``bounds``.

        Elements where the mask is 0 are returned bit for bit; where it is 1 they equal the pattern.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"a trigger applies to a floating-point batch (N, ...), got {got}")
        low, high = check_bounds(bounds)
        shape = tuple(x.shape[1:])
        m = self.mask(shape).to(x.device, x.dtype)
        p = self.pattern(shape, (low, high)).to(x.device, x.dtype)
        return ((1 - m) * x + m * p).clamp(low, high)


@dataclass(frozen=True, eq=False, init=False)
class PatchTrigger(Trigger):
    """A ``size`` x ``size`` square (BadNets) at ``position``, in every channel.

    - ``size``: None scales with the image, ``max(2, round(min(H, W) / 9))``: 2 on 8x8, 3 on 28x28,
      4 on 32x32. A tensor ``pattern`` sets it from its own shape.
    - ``position``: a corner name (:data:`POSITIONS`) or ``(row, col)`` of the patch's top-left pixel.
    - ``pattern``: "checkerboard" (alternating bounds high/low, high at the patch's top-left),
      "white" (high), "black" (low), or a tensor (h, w) or (C, h, w) in input units.
    - ``amplitude`` in (0, 1]: patch pixels move that share of the way to the pattern (1: replaced).
      Turner et al. (2019) poison with a reduced-amplitude trigger and test with the full one.
    """

    size: int | None = None
    position: str | tuple[int, int] = "bottom-right"
    pattern_spec: str | torch.Tensor = "checkerboard"
    amplitude: float = 1.0

    kind: ClassVar[str] = "patch"

    def __init__(
        self,
        size: int | None = None,
        position: str | tuple[int, int] = "bottom-right",
        pattern: str | torch.Tensor = "checkerboard",
        amplitude: float = 1.0,
    ) -> None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise AttackError(f"patch size must be a positive integer (pixels) or None, got {size!r}")
        if isinstance(position, str):
            if position not in POSITIONS:
                raise AttackError(f"unknown position {position!r}; use (row, col) or one of {POSITIONS}")
        else:
            pos = tuple(position)
            if len(pos) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pos):
                raise AttackError(f"position must be a corner name or (row, col) integers, got {position!r}")
            if min(pos) < 0:
                raise AttackError(f"position (row, col) must be >= 0, got {pos}")
            position = (int(pos[0]), int(pos[1]))
        if isinstance(pattern, str):
            if pattern not in PATCH_PATTERNS:
                raise AttackError(
                    f"unknown patch pattern {pattern!r}; use a tensor or one of {PATCH_PATTERNS}"
                )
        else:
            pattern = _pattern_tensor(pattern, "patch")
            if pattern.dim() not in (2, 3) or pattern.shape[-1] != pattern.shape[-2]:
                raise AttackError(
                    f"a patch pattern is square, (h, h) or (C, h, h); got {tuple(pattern.shape)}"
                )
            if size is not None and size != pattern.shape[-1]:
                raise AttackError(f"size={size} contradicts the {pattern.shape[-1]}-pixel pattern; drop size")
            size = int(pattern.shape[-1])
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "pattern_spec", pattern)
        object.__setattr__(self, "amplitude", _share("amplitude", amplitude))

    def region(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(row, col, size)`` of the patch in inputs of ``shape`` (C, H, W); AttackError if it overflows."""
        if len(shape) != 3:
            raise DataError(
                f"patch triggers need images (N, C, H, W); got per-sample shape {shape} — "
                "use a BlendTrigger for other data"
            )
        h, w = shape[1], shape[2]
        s = self.size if self.size is not None else max(2, round(min(h, w) / 9))
        if s > min(h, w):
            raise AttackError(f"a {s}x{s} patch does not fit in {h}x{w} images; use a smaller size")
        if isinstance(self.position, tuple):
            row, col = self.position
            if row + s > h or col + s > w:
                raise AttackError(f"a {s}x{s} patch at (row, col)=({row}, {col}) overflows {h}x{w} images")
            return row, col, s
        row = {"top": 0, "bottom": h - s, "center": (h - s) // 2}[self.position.split("-")[0]]
        col = {"left": 0, "right": w - s, "center": (w - s) // 2}[self.position.split("-")[-1]]
        return row, col, s

    def mask(self, shape: tuple[int, ...]) -> torch.Tensor:
        row, col, s = self.region(shape)
        m = torch.zeros(shape)
        m[:, row : row + s, col : col + s] = self.amplitude
        return m

    def pattern(self, shape: tuple[int, ...], bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
        row, col, s = self.region(shape)
        low, high = check_bounds(bounds)
        if isinstance(self.pattern_spec, torch.Tensor):
            if self.pattern_spec.dim() == 3 and self.pattern_spec.shape[0] not in (1, shape[0]):
                raise AttackError(
                    f"the patch pattern has {self.pattern_spec.shape[0]} channels, the data {shape[0]}"
                )
            patch = self.pattern_spec.expand(shape[0], s, s)
            if float(patch.min()) < low or float(patch.max()) > high:
                raise AttackError(
                    f"the patch pattern spans values outside the data's bounds [{low:g}, {high:g}]"
                )
        elif self.pattern_spec == "checkerboard":
            idx = torch.arange(s)
            patch = torch.where((idx[:, None] + idx[None, :]) % 2 == 0, high, low).expand(shape[0], s, s)
        else:
            patch = torch.full((shape[0], s, s), high if self.pattern_spec == "white" else low)
        p = torch.full(shape, low)
        p[:, row : row + s, col : col + s] = patch
        return p

    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "size": self.size,
            "position": list(self.position) if isinstance(self.position, tuple) else self.position,
            "pattern": self.pattern_spec if isinstance(self.pattern_spec, str) else "custom",
            "amplitude": self.amplitude,
        }


@dataclass(frozen=True, eq=False, init=False)
class BlendTrigger(Trigger):
    """x' = (1 - alpha) x + alpha pattern over the whole input (Chen et al. 2017's blended injection).

    ``pattern``: "noise" (uniform in the bounds, drawn from ``seed``: the same image on every device) or
    a tensor of the input's shape (or (H, W), shared by the channels) in input units. Chen et al. blend
    with alpha 0.2 for training; smaller alphas are harder to see and to learn.
    """

    pattern_spec: str | torch.Tensor = "noise"
    alpha: float = 0.1
    seed: int = 0

    kind: ClassVar[str] = "blend"

    def __init__(self, pattern: str | torch.Tensor = "noise", alpha: float = 0.1, seed: int = 0) -> None:
        if isinstance(pattern, str):
            if pattern != "noise":
                raise AttackError(f"unknown blend pattern {pattern!r}; use 'noise' or a tensor")
        else:
            pattern = _pattern_tensor(pattern, "blend")
        object.__setattr__(self, "pattern_spec", pattern)
        object.__setattr__(self, "alpha", _share("alpha", alpha))
        object.__setattr__(self, "seed", int(seed))

    def mask(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.full(shape, self.alpha)

    def pattern(self, shape: tuple[int, ...], bounds: Bounds = (0.0, 1.0)) -> torch.Tensor:
        low, high = check_bounds(bounds)
        if isinstance(self.pattern_spec, str):
            g = torch.Generator().manual_seed(self.seed)
            return low + (high - low) * torch.rand(shape, generator=g)
        p = self.pattern_spec
        if len(shape) == 3 and p.shape == shape[1:]:
            p = p.expand(shape)
        if tuple(p.shape) != tuple(shape):
            raise AttackError(
                f"blend pattern of shape {tuple(p.shape)} does not match inputs of shape {shape}"
            )
        if float(p.min()) < low or float(p.max()) > high:
            raise AttackError(f"the blend pattern spans values outside the data's bounds [{low:g}, {high:g}]")
        return p.clone()

    def params(self) -> dict[str, Any]:
        pattern = self.pattern_spec if isinstance(self.pattern_spec, str) else "custom"
        return {"kind": self.kind, "pattern": pattern, "alpha": self.alpha, "seed": self.seed}
