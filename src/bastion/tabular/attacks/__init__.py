"""Constrained evasion attacks on tabular classifiers (see :mod:`bastion.tabular`)."""

from __future__ import annotations

from bastion.tabular.attacks.base import CountingTabularClassifier, TabularAttack
from bastion.tabular.attacks.cascade import CascadeStage, TabularCascade, TabularCascadeResult
from bastion.tabular.attacks.cpgd import CPGD
from bastion.tabular.attacks.moeva import MoEvA

__all__ = [
    "CPGD",
    "CascadeStage",
    "CountingTabularClassifier",
    "MoEvA",
    "TabularAttack",
    "TabularCascade",
    "TabularCascadeResult",
]
