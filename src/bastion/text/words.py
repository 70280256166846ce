"""Words of a text with their character spans, and how two texts differ word by word and character by
character. The attacks edit words through these spans (the rest of the string stays byte for byte), and
the base class's verifier counts changes with the same functions, independently of what an attack says."""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

__all__ = ["Word", "char_edit_distance", "changed_words", "replace_word", "split_words", "transformations"]

# A word: letters/digits/underscore with inner apostrophes or hyphens ("don't", "well-made"). Invisible
# format characters (zero-width joiners and the like) count as part of the word they sit in, so an
# attacked word is still one word.
_FORMAT = "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
_WORD = re.compile(rf"[\w{_FORMAT}]+(?:['’\-][\w{_FORMAT}]+)*")


class Word(NamedTuple):
    """A word and its span ``text[start:end]``."""

    text: str
    start: int
    end: int


def split_words(text: str) -> list[Word]:
    """The words of ``text`` in order, with spans (punctuation and spaces are not words)."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def replace_word(text: str, word: Word, new: str) -> str:
    """``text`` with ``word``'s span replaced by ``new``; everything else unchanged."""
    return text[: word.start] + new + text[word.end :]


def changed_words(original: str, adversarial: str) -> list[int]:
    """Indices of ``original``'s words that are not kept, unchanged and in order, in ``adversarial``.

    Words are aligned with a longest-matching-blocks diff, so an insertion or deletion elsewhere does not
    count every later word as changed; case matters (a case flip is an edit).
    """
    a = [w.text for w in split_words(original)]
    b = [w.text for w in split_words(adversarial)]
    kept: set[int] = set()
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        kept.update(range(block.a, block.a + block.size))
    return [i for i in range(len(a)) if i not in kept]


def char_edit_distance(a: str, b: str, cap: int | None = None) -> int:
    """Levenshtein distance (insertions, deletions, substitutions; one each) between ``a`` and ``b``.

    With ``cap`` the dynamic programme is banded and returns ``cap + 1`` as soon as the distance must
    exceed ``cap``: O(len * cap) instead of O(len^2), which keeps verifying long texts cheap.
    """
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if cap is not None and len(a) - len(b) > cap:
        return cap + 1
    band = len(a) if cap is None else cap
    big = len(a) + len(b) + 1
    prev = [j if j <= band else big for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        lo, hi = max(1, i - band), min(len(b), i + band)
        cur = [big] * (len(b) + 1)
        if i <= band:
            cur[0] = i
        ca = a[i - 1]
        for j in range(lo, hi + 1):
            cost = 0 if ca == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        if cap is not None and min(cur[max(0, lo - 1) : hi + 1]) > cap:
            return cap + 1
        prev = cur
    d = prev[len(b)]
    return min(d, cap + 1) if cap is not None else d


def transformations(a: str, b: str) -> int:
    """Edits turning word ``a`` into ``b`` when swapping two adjacent characters counts as one edit
    (optimal string alignment: insertions, deletions, substitutions, adjacent transpositions).

    What DeepWordBug and TextAttack's recipes mean by "one modification per word": a swap of two letters
    is one typo, where Levenshtein counts two. Words are short, so the full O(len^2) table is cheap.
    """
    if a == b:
        return 0
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]
