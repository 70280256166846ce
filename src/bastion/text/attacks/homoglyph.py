"""Homoglyphs: letters replaced by look-alike Unicode characters, from "Bad Characters" (Boucher et
al. 2022, IEEE S&P, "Bad Characters: Imperceptible NLP Attacks").

Look-alikes come from the UTS #39 confusables table (:func:`bastion.text.confusables.homoglyphs`): for
each letter, the characters with the same skeleton. By default only those that Unicode NFKC leaves alone
(Cyrillic "а", Greek "ο", Armenian "օ"; not full-width or mathematical letters, which NFKC folds back and
which look styled), and only word characters, so an edited word is still one word. The lowest
``per_char`` code points are kept per letter: Latin-extended, Greek and Cyrillic come first, the scripts
every font draws like Latin.

Search: the paper optimises with differential evolution; here a greedy, scored search (every candidate
replacement in a word in one batched call, the best kept) walks the words in importance order
(TextFooler's deletion score). The budget is the threat's ``max_char_edits`` (each replaced letter is
one edit).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar

import torch

from bastion.errors import AttackError
from bastion.text.attacks._importance import greedy_word_edits
from bastion.text.attacks.base import BudgetedTextClassifier, TextAttack
from bastion.text.confusables import homoglyphs
from bastion.text.constraints import Resources
from bastion.text.threat import TextThreatModel
from bastion.text.words import Word

__all__ = ["Homoglyphs", "lookalikes"]

_WORD_CHAR = re.compile(r"\w")


@lru_cache(maxsize=512)
def lookalikes(char: str, per_char: int = 3, nfkc_stable: bool = True) -> tuple[str, ...]:
    """The look-alikes the attack may put in place of ``char`` (word characters only)."""
    if not char.isascii() or not char.isalnum():
        return ()
    found = [h for h in homoglyphs(char, nfkc_stable=nfkc_stable) if _WORD_CHAR.fullmatch(h)]
    return tuple(found[:per_char])


class Homoglyphs(TextAttack):
    """``Homoglyphs(per_char=3)(model, texts, labels, threat)``: look-alike letters in key words.

    ``per_char`` look-alikes are tried per letter; ``nfkc_stable=False`` also allows those NFKC undoes;
    ``max_candidates`` caps the candidates scored per word (a random subset drawn with the attack's
    generator when there are more); ``edits_per_word`` replacements per word at most.
    """

    name: ClassVar[str] = "homoglyph"
    family: ClassVar[str] = "homoglyph"
    uses: ClassVar[frozenset[str]] = frozenset({"homoglyph"})

    def __init__(
        self,
        *,
        per_char: int = 3,
        nfkc_stable: bool = True,
        max_candidates: int = 32,
        edits_per_word: int = 1,
        resources: Resources | None = None,
        max_queries: int | None = None,
    ) -> None:
        super().__init__(resources=resources, max_queries=max_queries)
        if per_char < 1 or max_candidates < 1 or edits_per_word < 1:
            raise AttackError("per_char, max_candidates and edits_per_word must be >= 1")
        self.per_char = per_char
        self.nfkc_stable = nfkc_stable
        self.max_candidates = max_candidates
        self.edits_per_word = edits_per_word

    def params(self) -> dict[str, Any]:
        return {**super().params(), "per_char": self.per_char, "nfkc_stable": self.nfkc_stable,
                "max_candidates": self.max_candidates, "edits_per_word": self.edits_per_word}  # fmt: skip

    def _attack_one(
        self, model: BudgetedTextClassifier, text: str, label: int, threat: TextThreatModel,
        generator: torch.Generator,
    ) -> str:  # fmt: skip
        def propose(current: str, word: Word, g: torch.Generator) -> list[str]:
            spots = [(i, h) for i in range(word.start, word.end)
                     for h in lookalikes(current[i], self.per_char, self.nfkc_stable)]  # fmt: skip
            if len(spots) > self.max_candidates:
                keep = torch.randperm(len(spots), generator=g)[: self.max_candidates].sort().values
                spots = [spots[int(k)] for k in keep]
            return [current[:i] + h + current[i + 1 :] for i, h in spots]

        return greedy_word_edits(model, text, label, threat, self.resources, propose, generator,
                                 method="delete", edits_per_word=self.edits_per_word)  # fmt: skip
