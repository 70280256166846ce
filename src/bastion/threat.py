"""The threat model: which perturbations an attacker may apply.

One value, read by attacks, evaluation, certification and reports alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction

import torch

from bastion.errors import ThreatModelError

__all__ = ["Bounds", "Norm", "ThreatModel", "format_epsilon"]

Bounds = tuple[float, float]

_NORM_ALIASES = {
    "linf": "linf",
    "l_inf": "linf",
    "inf": "linf",
    "l-inf": "linf",
    "infinity": "linf",
    "l2": "l2",
    "l_2": "l2",
    "2": "l2",
}


class Norm(StrEnum):
    """The norm of the perturbation budget."""

    LINF = "linf"
    L2 = "l2"

    @classmethod
    def parse(cls, value: Norm | str | float | int) -> Norm:
        """Accept ``Norm``, ``"linf"``/``"Linf"``/``"inf"``, ``"l2"``/``2``, ``float("inf")``."""
        if isinstance(value, Norm):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            key = "inf" if math.isinf(value) else str(int(value)) if float(value).is_integer() else ""
        else:
            key = str(value).strip().lower()
        if key in _NORM_ALIASES:
            return cls(_NORM_ALIASES[key])
        valid = ", ".join(n.value for n in cls)
        raise ThreatModelError(f"unknown norm {value!r}; use one of: {valid}")

    def __str__(self) -> str:
        return self.value


def format_epsilon(epsilon: float) -> str:
    """An epsilon as a person wrote it: ``0.1`` stays ``0.1``, ``8 / 255`` prints ``8/255`` (not
    ``0.0313725``), ``math.inf`` prints ``inf``.

    The short decimal is used when it reads back as the same float; otherwise a fraction with a
    denominator up to 1024 that gives exactly this float (what ``8/255`` on the command line parses to);
    otherwise four significant digits.
    """
    if math.isinf(epsilon):
        return "inf"
    short = f"{epsilon:g}"
    if float(short) == epsilon:
        return short
    frac = Fraction(epsilon).limit_denominator(1024)
    if frac.numerator and float(frac) == epsilon:
        return f"{frac.numerator}/{frac.denominator}"
    return f"{epsilon:.4g}"


def check_bounds(bounds: tuple[float, float]) -> Bounds:
    """Validate a (low, high) pair: finite numbers with low < high."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError) as exc:
        raise ThreatModelError(f"bounds must be a pair (low, high) of numbers, got {bounds!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ThreatModelError(f"bounds must be finite with low < high, got ({low}, {high})")
    return (low, high)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


@dataclass(frozen=True, init=False)
class ThreatModel:
    """Perturbations ``delta`` with ``||delta||_norm <= epsilon`` and ``x + delta`` inside ``bounds``.

    ``norm`` takes a :class:`Norm` or a string (``"linf"``, ``"l2"``, ...). ``epsilon`` may be
    ``math.inf`` for an unbounded attacker (only the input bounds constrain it); minimum-norm attacks
    and the audit's sanity checks use that.
    """

    norm: Norm
    epsilon: float
    bounds: Bounds

    def __init__(
        self, norm: Norm | str | float, epsilon: float, bounds: tuple[float, float] = (0.0, 1.0)
    ) -> None:
        object.__setattr__(self, "norm", Norm.parse(norm))
        try:
            eps = float(epsilon)
        except (TypeError, ValueError) as exc:
            raise ThreatModelError(f"epsilon must be a number, got {epsilon!r}") from exc
        if math.isnan(eps) or eps <= 0:
            raise ThreatModelError(
                f"epsilon must be > 0, got {epsilon!r} (use e.g. 8/255 for linf on [0, 1] images)"
            )
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "bounds", check_bounds(bounds))

    @property
    def unbounded(self) -> bool:
        return math.isinf(self.epsilon)

    def with_epsilon(self, epsilon: float) -> ThreatModel:
        return replace(self, epsilon=epsilon)

    def distance(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of ``x_adv - x``; shape (N,)."""
        delta = _flat(x_adv - x)
        if self.norm is Norm.LINF:
            return delta.abs().amax(dim=1)
        return delta.norm(p=2, dim=1)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """A point inside the ball around ``x`` intersected with the bounds.

        For linf this is the exact Euclidean projection (a box). For l2 the delta is scaled onto the
        ball, then clipped to the bounds; clipping moves each coordinate towards ``x`` (which is inside
        the bounds), so the result stays in the ball.
        """
        low, high = self.bounds
        delta = x_adv - x
        if not self.unbounded:
            if self.norm is Norm.LINF:
                delta = delta.clamp(-self.epsilon, self.epsilon)
            else:
                norms = _flat(delta).norm(p=2, dim=1).clamp_min(1e-12)
                factor = (self.epsilon / norms).clamp(max=1.0)
                delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
        return (x + delta).clamp(low, high)

    def contains(self, x: torch.Tensor, x_adv: torch.Tensor, *, rtol: float = 1e-5) -> torch.Tensor:
        """Per-sample bool (N,): ``x_adv`` is inside the ball (up to float rounding) and the bounds."""
        low, high = self.bounds
        slack = rtol * max(1.0, high - low)
        in_bounds = _flat((x_adv >= low - slack) & (x_adv <= high + slack)).all(dim=1)
        if self.unbounded:
            return in_bounds
        in_ball = self.distance(x, x_adv) <= self.epsilon * (1 + rtol) + 1e-7
        return in_bounds & in_ball

    def __str__(self) -> str:
        bounds = f"[{self.bounds[0]:g}, {self.bounds[1]:g}]"
        return f"{self.norm.value} eps={format_epsilon(self.epsilon)} bounds={bounds}"
