"""Attacks by name. Modules are imported on first use, so listing names costs nothing."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from bastion.attacks.base import Attack
from bastion.errors import AttackError

__all__ = ["AttackInfo", "available", "get", "info"]

_EVASION = "bastion.attacks.evasion"

# name -> (module, class, default kwargs, one-line description)
_ENTRIES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "fgsm": (f"{_EVASION}.fgsm", "FGSM", {}, "Fast Gradient Sign Method, one step (Goodfellow et al. 2015)"),
    "pgd": (f"{_EVASION}.pgd", "PGD", {}, "Projected Gradient Descent with random start (Madry et al. 2018)"),
    "apgd-ce": (f"{_EVASION}.apgd", "APGD", {"loss": "ce"}, "Auto-PGD, cross-entropy (Croce & Hein 2020)"),
    "apgd-dlr": (f"{_EVASION}.apgd", "APGD", {"loss": "dlr"}, "Auto-PGD, DLR loss (Croce & Hein 2020)"),
    "apgd-t": (
        f"{_EVASION}.apgd",
        "APGD",
        {"loss": "dlr", "targeted": True},
        "Auto-PGD, targeted DLR over the top classes (Croce & Hein 2020)",
    ),
    "cw-l2": (
        f"{_EVASION}.cw",
        "CarliniWagner",
        {},
        "Carlini-Wagner L2, minimum norm (Carlini & Wagner 2017)",
    ),
    "deepfool": (
        f"{_EVASION}.deepfool",
        "DeepFool",
        {},
        "DeepFool, minimum norm (Moosavi-Dezfooli et al. 2016)",
    ),
    "fab": (
        f"{_EVASION}.fab",
        "FAB",
        {},
        "Fast Adaptive Boundary attack, minimum norm (Croce & Hein 2020)",
    ),
    "fab-t": (
        f"{_EVASION}.fab",
        "FAB",
        {"targeted": True},
        "FAB-T: targeted FAB over the top classes, AutoAttack's third stage (Croce & Hein 2020)",
    ),
    "fmn": (f"{_EVASION}.fmn", "FMN", {}, "Fast Minimum-Norm attack (Pintor et al. 2021)"),
    "square": (
        f"{_EVASION}.square",
        "Square",
        {},
        "Square Attack, score-based black-box (Andriushchenko et al. 2020)",
    ),
    "noise": (
        f"{_EVASION}.noise",
        "RandomNoise",
        {},
        "Random noise on the epsilon-sphere, labels only: the sanity baseline (Carlini et al. 2019)",
    ),
    "transfer": (
        f"{_EVASION}.transfer",
        "Transfer",
        {},
        "PGD on a surrogate distilled from the model's labels, checked on the model (Papernot et al. 2017)",
    ),
    "hopskipjump": (
        f"{_EVASION}.hopskipjump",
        "HopSkipJump",
        {},
        "HopSkipJump, decision-based black-box, labels only (Chen et al. 2020)",
    ),
}


@dataclass(frozen=True)
class AttackInfo:
    name: str
    cls: type[Attack]
    defaults: dict[str, Any]
    description: str

    @property
    def norms(self) -> list[str]:
        return sorted(n.value for n in self.cls.norms)

    @property
    def access(self) -> str:
        return self.cls.access

    @property
    def minimum_norm(self) -> bool:
        return self.cls.minimum_norm


def available() -> list[str]:
    """Registered attack names, sorted."""
    return sorted(_ENTRIES)


def _entry(name: str) -> tuple[str, str, dict[str, Any], str]:
    key = name.strip().lower()
    if key not in _ENTRIES:
        raise AttackError(f"unknown attack {name!r}; available: {', '.join(available())}")
    return _ENTRIES[key]


def attack_class(class_name: str) -> type[Attack]:
    for module, cls_name, _, _ in _ENTRIES.values():
        if cls_name == class_name:
            return getattr(importlib.import_module(module), cls_name)
    raise AttributeError(class_name)


def info(name: str) -> AttackInfo:
    module, cls_name, defaults, description = _entry(name)
    cls = getattr(importlib.import_module(module), cls_name)
    return AttackInfo(name=name.strip().lower(), cls=cls, defaults=dict(defaults), description=description)


def get(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name``; ``kwargs`` override its defaults.

    >>> get("pgd", steps=100)  # doctest: +SKIP
    """
    entry = info(name)
    try:
        return entry.cls(**{**entry.defaults, **kwargs})
    except TypeError as exc:
        raise AttackError(f"bad hyperparameters for {entry.name}: {exc}") from exc
