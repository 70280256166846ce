"""Text attacks: character-level (DeepWordBug, invisible characters, homoglyphs) and word-level (greedy
word-importance synonym substitution in the style of TextFooler, PWWS), all black-box, all verified
against a :class:`bastion.text.TextThreatModel` by the base class."""

from __future__ import annotations

from bastion.text.attacks.base import BudgetedTextClassifier, TextAttack
from bastion.text.attacks.deepwordbug import DeepWordBug
from bastion.text.attacks.homoglyph import Homoglyphs
from bastion.text.attacks.invisible import InvisibleCharacters
from bastion.text.attacks.pwws import PWWS
from bastion.text.attacks.result import TextAttackResult, show_edit
from bastion.text.attacks.textfooler import TextFooler

__all__ = ["BudgetedTextClassifier", "TextAttack", "TextAttackResult", "show_edit"]
__all__ += ["DeepWordBug", "Homoglyphs", "InvisibleCharacters"]
__all__ += ["PWWS", "TextFooler"]
