"""Poisoning attacks by name, built from flat options (what the CLI and configs pass)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from bastion.attacks.poisoning.backdoor import Backdoor
from bastion.attacks.poisoning.base import PoisonAttack
from bastion.attacks.poisoning.clean_label import CleanLabel
from bastion.attacks.poisoning.label_flip import LabelFlip
from bastion.attacks.poisoning.triggers import BlendTrigger, PatchTrigger
from bastion.errors import AttackError

__all__ = ["POISONS", "make_poison"]


def label_flip(rate: float, source: int | None = None, target: int | None = None) -> LabelFlip:
    return LabelFlip(rate, source=source, target=target)


def badnets(
    target: int,
    rate: float,
    size: int | None = None,
    position: str | tuple[int, int] = "bottom-right",
    pattern: str = "checkerboard",
    amplitude: float = 1.0,
    mode: str = "replace",
) -> Backdoor:
    return Backdoor(PatchTrigger(size, position, pattern, amplitude), target, rate, mode=mode)


def blend(
    target: int,
    rate: float,
    alpha: float = 0.1,
    pattern: str = "noise",
    noise_seed: int = 0,
    mode: str = "replace",
) -> Backdoor:
    return Backdoor(BlendTrigger(pattern, alpha, seed=noise_seed), target, rate, mode=mode)


def clean_label(
    target: int,
    rate: float,
    epsilon: float = 16 / 255,
    steps: int = 20,
    norm: str = "linf",
    step_size: float | None = None,
    size: int | None = None,
    position: str | tuple[int, int] = "bottom-right",
    pattern: str = "checkerboard",
    amplitude: float = 1.0,
    batch_size: int = 256,
) -> CleanLabel:
    trigger = PatchTrigger(size, position, pattern, amplitude)
    return CleanLabel(trigger, target, rate, epsilon, steps, norm, step_size=step_size, batch_size=batch_size)


POISONS: dict[str, Callable[..., PoisonAttack]] = {
    "label-flip": label_flip,
    "badnets": badnets,
    "blend": blend,
    "clean-label": clean_label,
}
"""name -> factory; each factory's keyword arguments are the attack's options."""


def make_poison(name: str, **options: Any) -> PoisonAttack:
    """The poisoning attack ``name`` built from ``options``; unknown names, unknown options and missing
    required options raise an AttackError that lists the valid ones.

    >>> make_poison("badnets", target=0, rate=0.05, size=3)  # doctest: +SKIP
    """
    key = name.strip().lower().replace("_", "-")
    if key not in POISONS:
        raise AttackError(f"unknown poisoning attack {name!r}; use one of: {', '.join(POISONS)}")
    params = inspect.signature(POISONS[key]).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise AttackError(f"{key} has no option(s) {', '.join(unknown)}; it takes: {', '.join(params)}")
    missing = [
        p for p, spec in params.items() if spec.default is inspect.Parameter.empty and p not in options
    ]
    if missing:
        raise AttackError(f"{key} needs option(s) {', '.join(missing)}")
    return POISONS[key](**options)
