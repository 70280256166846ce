"""Constrained evasion attacks on tabular classifiers (see :mod:`bastion.tabular`)."""

from __future__ import annotations

from bastion.tabular.attacks.base import CountingTabularClassifier, TabularAttack
from bastion.tabular.attacks.cpgd import CPGD

__all__ = ["CPGD", "CountingTabularClassifier", "TabularAttack"]
