"""The input-transformation contract: an exact transform plus a differentiable surrogate for BPDA.

A transform maps a batch ``x`` (N, C, H, W) inside ``bounds`` to a batch of the same shape, dtype and
device, inside the same bounds. Subclasses implement ``_apply`` on inputs rescaled to [0, 1]; the base
class does the rescaling, so every transform works for any finite bounds (e.g. (-1, 1) or (0, 255)).

BPDA (Backward Pass Differentiable Approximation, Athalye, Carlini & Wagner 2018, "Obfuscated Gradients
Give a False Sense of Security") evaluates the exact transform on the forward pass and back-propagates
through :meth:`Transform.surrogate`; :meth:`Transform.bpda` builds that pair.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from bastion.errors import DataError, DefenseError

__all__ = ["DefenseError", "Transform", "check_images"]

Bounds = tuple[float, float]


def check_images(x: torch.Tensor, name: str) -> None:
    """Raise DataError unless ``x`` is a floating-point image batch (N, C, H, W)."""
    if x.dim() != 4:
        raise DataError(
            f"{name} needs image batches of shape (N, C, H, W), got shape {tuple(x.shape)}; "
            "reshape flat inputs to images or use a transform that works element-wise (bits)"
        )


def _check(x: torch.Tensor, bounds: Bounds) -> tuple[float, float]:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"transforms need a floating-point torch.Tensor, got {kind}")
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise DataError(f"bounds must be a pair (low, high) of numbers, got {bounds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise DataError(f"bounds must be finite with low < high, got ({low}, {high})")
    return low, high


class Transform(ABC):
    """Base of every input transformation defense.

    ``name`` is the registry name (``parse_defense`` reads ``name:arg``). ``randomized`` is True when the
    output depends on the generator. ``differentiable`` is True when the torch ops of the exact transform
    have useful gradients (then BPDA back-propagates through the transform itself).
    """

    name: ClassVar[str] = "transform"
    randomized: ClassVar[bool] = False
    differentiable: ClassVar[bool] = False

    def __call__(
        self, x: torch.Tensor, *, bounds: Bounds = (0.0, 1.0), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The exact transform of ``x`` (N, ...) inside ``bounds``: same shape, dtype, device, bounds.

        ``generator`` drives randomised transforms (default: a fresh generator seeded 0, so the same
        call gives the same output). ``x`` is never modified.
        """
        low, high = _check(x, bounds)
        span = high - low
        unit = (x - low) / span
        out = self._apply(unit, self._generator(x, generator))
        return out.clamp(0.0, 1.0) * span + low

    @abstractmethod
    def _apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The transform on ``x`` rescaled to [0, 1]; returns the same shape (clamped by the caller)."""

    def surrogate(
        self, x: torch.Tensor, *, bounds: Bounds = (0.0, 1.0), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A differentiable approximation whose gradient BPDA uses; the identity unless overridden.

        Differentiable transforms are their own surrogate.
        """
        if self.differentiable:
            return self(x, bounds=bounds, generator=generator)
        _check(x, bounds)
        return x

    def bpda(
        self, x: torch.Tensor, *, bounds: Bounds = (0.0, 1.0), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The exact transform's values with the surrogate's gradient (Athalye et al. 2018).

        Returns ``s + (exact - s).detach()`` where ``s = surrogate(x)``: equal to ``exact`` in value,
        with ``d/dx`` equal to the surrogate's. Both see the same random draw (the generator state is
        replayed), so for randomised transforms the gradient belongs to the output it explains.
        """
        _check(x, bounds)
        if self.differentiable or not (torch.is_grad_enabled() and x.requires_grad):
            return self(x, bounds=bounds, generator=generator)
        gen = self._generator(x, generator)
        state = gen.get_state() if self.randomized else None
        exact = self(x.detach(), bounds=bounds, generator=gen)
        if state is not None:
            gen.set_state(state)
        s = self.surrogate(x, bounds=bounds, generator=gen)
        return s + (exact - s).detach()

    @staticmethod
    def _generator(x: torch.Tensor, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        return torch.Generator(device=x.device).manual_seed(0)

    def spec(self) -> str:
        """The ``parse_defense`` spelling of this transform, e.g. ``"jpeg:75"``."""
        return self.name
