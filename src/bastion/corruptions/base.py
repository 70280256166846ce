"""Common corruptions: the contract every corruption keeps, and the corruption threat value.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019): ImageNet-C / CIFAR-10-C apply fifteen (plus four held-out) corruptions at
five severities each. Here each corruption is a :class:`Corruption`: a pure function of a batch, one
constant per severity (the CIFAR-10-C constants of the paper's reference generator,
``ImageNet-C/create_c/make_cifar_c.py`` in github.com/hendrycks/robustness), and, for the random ones,
a caller's ``torch.Generator``.

The base class enforces what a subclass cannot get wrong: the input is an (N, C, H, W) float tensor
inside ``bounds``; the algorithm sees it rescaled to [0, 1] (so every constant keeps its meaning for
any bounds); the output is mapped back, clipped to ``bounds``, with the input's shape, dtype and device;
the input is never mutated; the only source of randomness is ``generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import torch

from bastion.errors import DataError, ThreatModelError
from bastion.threat import check_bounds

__all__ = ["Corruption", "CorruptionThreat", "SEVERITIES", "check_severity", "corruption"]

SEVERITIES: Final[tuple[int, ...]] = (1, 2, 3, 4, 5)

Kernel = Callable[[torch.Tensor, Any, "torch.Generator | None"], torch.Tensor]


def check_severity(severity: object) -> int:
    """``severity`` as an int in 1..5, or a one-line :class:`ThreatModelError`."""
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ThreatModelError(f"corruption severity must be an integer in 1..5, got {severity!r}")
    return severity


class Corruption:
    """One corruption: ``corruption(x, severity, generator, bounds=(0, 1)) -> x_corrupted``.

    - ``x``: (N, C, H, W) floating-point tensor with values in ``bounds``.
    - ``severity``: 1 (mildest) .. 5 (harshest); picks ``constants[severity - 1]``.
    - ``generator``: a ``torch.Generator`` on ``x.device``; required when ``random`` is True (same
      generator state, same output), ignored otherwise.
    - Returns a new tensor, same shape, dtype and device as ``x``, every value inside ``bounds``.

    ``family`` is "noise", "blur" or "digital" (the paper's grouping, with weather folded into digital).
    ``kernel(x01, constant, generator)`` implements the algorithm on [0, 1] images.
    """

    def __init__(
        self,
        kernel: Kernel,
        *,
        name: str,
        family: str,
        constants: tuple[Any, ...],
        random: bool,
        min_channels: int = 1,
    ) -> None:
        if len(constants) != len(SEVERITIES):
            raise ThreatModelError(
                f"{name}: needs {len(SEVERITIES)} severity constants, got {len(constants)}"
            )
        self.kernel = kernel
        self.name = name
        self.family = family
        self.constants = constants
        self.random = random
        self.min_channels = min_channels
        self.__doc__ = kernel.__doc__

    def __call__(
        self,
        x: torch.Tensor,
        severity: int,
        generator: torch.Generator | None = None,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> torch.Tensor:
        level = check_severity(severity)
        low, high = check_bounds(bounds)
        self._check_input(x, low, high)
        if self.random and generator is None:
            raise ThreatModelError(
                f"{self.name} is random: pass generator=torch.Generator(device=x.device).manual_seed(seed)"
            )
        with torch.no_grad():
            x01 = (x.detach() - low) / (high - low)
            out01 = self.kernel(x01, self.constants[level - 1], generator)
            out = out01.clamp(0.0, 1.0) * (high - low) + low
            return out.clamp(low, high).to(dtype=x.dtype, device=x.device)

    def _check_input(self, x: torch.Tensor, low: float, high: float) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"{self.name}: expected a float tensor of shape (N, C, H, W), got {got}")
        if x.shape[1] < self.min_channels:
            raise DataError(
                f"{self.name} needs at least {self.min_channels} channels (colour images), got {x.shape[1]}"
            )
        if x.numel() and (not bool(torch.isfinite(x).all()) or x.min() < low - 1e-6 or x.max() > high + 1e-6):
            raise DataError(f"{self.name}: inputs must be finite and inside bounds ({low}, {high})")

    def __repr__(self) -> str:
        return f"Corruption({self.name}, family={self.family}, constants={self.constants})"


def corruption(
    *, family: str, constants: tuple[Any, ...], random: bool, min_channels: int = 1
) -> Callable[[Kernel], Corruption]:
    """Decorator: turn ``kernel(x01, constant, generator)`` into a :class:`Corruption` of its name."""

    def wrap(kernel: Kernel) -> Corruption:
        return Corruption(
            kernel,
            name=kernel.__name__,
            family=family,
            constants=constants,
            random=random,
            min_channels=min_channels,
        )

    return wrap


@dataclass(frozen=True)
class CorruptionThreat:
    """A corruption and the severities to evaluate it at: ``CorruptionThreat("fog", (1, 3, 5))``."""

    name: str
    severities: tuple[int, ...] = SEVERITIES

    def __post_init__(self) -> None:
        from bastion.corruptions import get_corruption  # the registry imports this module

        get_corruption(self.name)
        if isinstance(self.severities, int) or not self.severities:
            raise ThreatModelError(f"severities must be a non-empty tuple of 1..5, got {self.severities!r}")
        object.__setattr__(self, "severities", tuple(check_severity(s) for s in self.severities))
        if len(set(self.severities)) != len(self.severities):
            raise ThreatModelError(f"severities must not repeat, got {self.severities!r}")

    @property
    def corruption(self) -> Corruption:
        from bastion.corruptions import get_corruption

        return get_corruption(self.name)
