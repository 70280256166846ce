"""DeepWordBug: scored character edits on the most important words (Gao et al. 2018, "Black-box
Generation of Adversarial Text Sequences to Evade Deep Learning Classifiers", IEEE S&P Workshops).

Words are ranked by the Replace-1 score (the true class's probability drop when the word becomes an
out-of-vocabulary token; ``scoring="delete"`` uses TextFooler's deletion score instead). The top words are
edited one at a time with one of the threat's character edits -- swap two adjacent inner letters,
substitute a neighbouring key on a QWERTY keyboard, delete a letter, insert a random letter -- and per
word the candidate that lowers the true class's probability most is kept (all candidates in one batched
call; the paper draws one edit at random, scoring several is the greedy choice TextAttack's recipe makes).
It stops when the prediction flips or the budget (``max_char_edits``, ``max_words_changed``,
``max_edits_per_word``, checked by the verifier before any query) is spent.

Note: the verifier counts Levenshtein edits, so a swap costs 2 and is out of reach under a budget of one
edit per word (the ``paper`` preset); it is tried wherever the budget allows it.
"""

from __future__ import annotations

import string
from typing import Any, ClassVar

import torch

from bastion.errors import AttackError
from bastion.text.attacks._importance import ImportanceMethod, greedy_word_edits
from bastion.text.attacks.base import BudgetedTextClassifier, TextAttack
from bastion.text.constraints import Resources
from bastion.text.threat import TextThreatModel
from bastion.text.words import Word

__all__ = ["DeepWordBug", "keyboard_neighbours"]

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    # Key positions with the usual stagger (each row shifted right by half a key): neighbours are the
    # keys at most one row and about one key width away.
    pos = {c: (r, c_i + 0.5 * r) for r, row in enumerate(_ROWS) for c_i, c in enumerate(row)}
    return {
        a: "".join(b for b, (rb, xb) in pos.items() if b != a and abs(rb - ra) <= 1 and abs(xb - xa) <= 1)
        for a, (ra, xa) in pos.items()
    }


_KEYS = _neighbours()


def keyboard_neighbours(char: str) -> str:
    """The QWERTY keys next to ``char`` (case kept; "" for a character not on the letter rows)."""
    near = _KEYS.get(char.lower(), "")
    return near.upper() if char.isupper() else near


class DeepWordBug(TextAttack):
    """``DeepWordBug(max_candidates=32)(model, texts, labels, threat)``: character typos on key words.

    ``max_candidates`` caps the candidate edits scored per word (a random subset, drawn with the
    attack's generator, when a word has more); ``edits_per_word`` edits per word at most (the paper: 1).
    """

    name: ClassVar[str] = "deepwordbug"
    family: ClassVar[str] = "deepwordbug"
    uses: ClassVar[frozenset[str]] = frozenset({"insert", "delete", "swap", "substitute"})

    def __init__(
        self,
        *,
        max_candidates: int = 32,
        scoring: ImportanceMethod = "unk",
        edits_per_word: int = 1,
        resources: Resources | None = None,
        max_queries: int | None = None,
    ) -> None:
        super().__init__(resources=resources, max_queries=max_queries)
        if max_candidates < 1 or edits_per_word < 1:
            raise AttackError("max_candidates and edits_per_word must be >= 1")
        if scoring not in ("unk", "delete"):
            raise AttackError(f"unknown scoring {scoring!r}; use 'unk' (Replace-1) or 'delete'")
        self.max_candidates = max_candidates
        self.scoring: ImportanceMethod = scoring
        self.edits_per_word = edits_per_word

    def params(self) -> dict[str, Any]:
        return {**super().params(), "max_candidates": self.max_candidates, "scoring": self.scoring,
                "edits_per_word": self.edits_per_word}  # fmt: skip

    def _attack_one(
        self, model: BudgetedTextClassifier, text: str, label: int, threat: TextThreatModel,
        generator: torch.Generator,
    ) -> str:  # fmt: skip
        kinds = sorted(threat.edits & self.uses)

        def propose(current: str, word: Word, g: torch.Generator) -> list[str]:
            edited = _edits(word.text, kinds, g)
            if len(edited) > self.max_candidates:
                keep = torch.randperm(len(edited), generator=g)[: self.max_candidates].sort().values
                edited = [edited[int(i)] for i in keep]
            return [current[: word.start] + e + current[word.end :] for e in edited]

        return greedy_word_edits(model, text, label, threat, self.resources, propose, generator,
                                 method=self.scoring, edits_per_word=self.edits_per_word)  # fmt: skip


def _edits(word: str, kinds: list[str], g: torch.Generator) -> list[str]:
    """Every single edit of ``word`` of the allowed kinds (insertions draw their letter at random)."""
    n = len(word)
    out: list[str] = []
    if "swap" in kinds:  # adjacent inner letters: the first and last letters stay (the word stays legible)
        out += [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(1, n - 2)
                if word[i] != word[i + 1]]  # fmt: skip
    if "substitute" in kinds:
        out += [word[:i] + k + word[i + 1 :] for i in range(n) for k in keyboard_neighbours(word[i])]
    if "delete" in kinds and n > 1:
        out += [word[:i] + word[i + 1 :] for i in range(n)]
    if "insert" in kinds:
        letters = torch.randint(0, 26, (n + 1,), generator=g).tolist()
        out += [word[:i] + string.ascii_lowercase[c] + word[i:] for i, c in enumerate(letters)]
    return out
