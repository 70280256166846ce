"""Invisible characters: imperceptible perturbations from "Bad Characters" (Boucher et al. 2022, IEEE
S&P, "Bad Characters: Imperceptible NLP Attacks").

Characters that render as nothing are injected inside the most important words, where they break the
word for a tokenizer (a word model sees an unknown word, a subword model a different split) and leave
the text looking the same to a reader. Edit sets:

- ``"zero-width"`` (default): zero-width space U+200B, zero-width non-joiner U+200C, zero-width joiner
  U+200D, word joiner U+2060 -- the paper's invisible characters.
- ``"bidi"``: left-to-right mark U+200E and right-to-left mark U+200F. Both are zero-width directional
  *marks* (not overrides): between two Latin letters they change no visible order, so they are as
  invisible as a zero-width space but survive filters that strip only the zero-width set. (The paper's
  reordering attack, which encodes text in another order behind bidi overrides, changes the underlying
  characters and is not an invisible-only edit; the verifier would rightly refuse it.)
- ``"all"``: both sets.

Search: the paper optimises with differential evolution; here a greedy, scored search (every candidate
position x character of a word in one batched call, the best kept) walks the words in importance order
(TextFooler's deletion score), which is cheaper in queries and deterministic for a seed. The budget is
the threat's ``max_char_edits`` (each injected character is one edit).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from bastion.errors import AttackError
from bastion.text.attacks._importance import greedy_word_edits
from bastion.text.attacks.base import BudgetedTextClassifier, TextAttack
from bastion.text.constraints import Resources
from bastion.text.threat import TextThreatModel
from bastion.text.words import Word

__all__ = ["BIDI_MARKS", "InvisibleCharacters", "ZERO_WIDTH"]

ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")
BIDI_MARKS = ("\u200e", "\u200f")
CharSet = Literal["zero-width", "bidi", "all"]
_SETS = {"zero-width": ZERO_WIDTH, "bidi": BIDI_MARKS, "all": ZERO_WIDTH + BIDI_MARKS}


class InvisibleCharacters(TextAttack):
    """``InvisibleCharacters(chars="zero-width")(model, texts, labels, threat)``.

    ``max_candidates`` caps the (position, character) candidates scored per word (a random subset drawn
    with the attack's generator when there are more); ``edits_per_word`` injections per word at most.
    """

    name: ClassVar[str] = "invisible"
    family: ClassVar[str] = "invisible"
    uses: ClassVar[frozenset[str]] = frozenset({"invisible"})

    def __init__(
        self,
        *,
        chars: CharSet = "zero-width",
        max_candidates: int = 32,
        edits_per_word: int = 1,
        resources: Resources | None = None,
        max_queries: int | None = None,
    ) -> None:
        super().__init__(resources=resources, max_queries=max_queries)
        if chars not in _SETS:
            raise AttackError(f"unknown invisible character set {chars!r}; use one of: {', '.join(_SETS)}")
        if max_candidates < 1 or edits_per_word < 1:
            raise AttackError("max_candidates and edits_per_word must be >= 1")
        self.chars: CharSet = chars
        self.max_candidates = max_candidates
        self.edits_per_word = edits_per_word

    def params(self) -> dict[str, Any]:
        return {**super().params(), "chars": self.chars, "max_candidates": self.max_candidates,
                "edits_per_word": self.edits_per_word}  # fmt: skip

    def _attack_one(
        self, model: BudgetedTextClassifier, text: str, label: int, threat: TextThreatModel,
        generator: torch.Generator,
    ) -> str:  # fmt: skip
        chars = _SETS[self.chars]

        def propose(current: str, word: Word, g: torch.Generator) -> list[str]:
            # Inside the word only (between two of its characters): at a word's edge the character
            # would join the neighbouring space, and a one-letter word has no inside.
            spots = [(i, c) for i in range(word.start + 1, word.end) for c in chars]
            if len(spots) > self.max_candidates:
                keep = torch.randperm(len(spots), generator=g)[: self.max_candidates].sort().values
                spots = [spots[int(k)] for k in keep]
            return [current[:i] + c + current[i:] for i, c in spots]

        return greedy_word_edits(model, text, label, threat, self.resources, propose, generator,
                                 method="delete", edits_per_word=self.edits_per_word)  # fmt: skip
