"""Attacks. ``get(name)`` builds one by name; classes import lazily on first access."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.attacks._registry import AttackInfo, available, get, info
from bastion.attacks.base import Attack

if TYPE_CHECKING:
    from bastion.attacks.evasion.apgd import APGD
    from bastion.attacks.evasion.cw import CarliniWagner
    from bastion.attacks.evasion.deepfool import DeepFool
    from bastion.attacks.evasion.fab import FAB
    from bastion.attacks.evasion.fgsm import FGSM
    from bastion.attacks.evasion.fmn import FMN
    from bastion.attacks.evasion.hopskipjump import HopSkipJump
    from bastion.attacks.evasion.noise import RandomNoise
    from bastion.attacks.evasion.pgd import PGD
    from bastion.attacks.evasion.square import Square
    from bastion.attacks.evasion.transfer import Transfer

__all__ = [
    "APGD",
    "Attack",
    "AttackInfo",
    "CarliniWagner",
    "DeepFool",
    "FAB",
    "FGSM",
    "FMN",
    "HopSkipJump",
    "PGD",
    "RandomNoise",
    "Square",
    "Transfer",
    "available",
    "get",
    "info",
]

_LAZY = {
    "APGD",
    "CarliniWagner",
    "DeepFool",
    "FAB",
    "FGSM",
    "FMN",
    "HopSkipJump",
    "PGD",
    "RandomNoise",
    "Square",
    "Transfer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from bastion.attacks._registry import attack_class

        return attack_class(name)
    raise AttributeError(f"module 'bastion.attacks' has no attribute {name!r}")
