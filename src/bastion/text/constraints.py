"""The verifier of text adversarials: does an (original, adversarial) pair satisfy a threat model?

It is deliberately independent of the attacks: the attack base class calls :func:`violations` on every
result and counts a success only when the list is empty, so an attack with a bug in its own bookkeeping
cannot report an edit that breaks the budget. Checks that need a language resource (embeddings, a
sentence encoder, a part-of-speech source) use the :class:`Resources` given; a threat model that asks for
a check whose resource is missing is refused up front (:meth:`Resources.require`), never silently skipped.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bastion.errors import ThreatModelError
from bastion.text.confusables import is_default_ignorable
from bastion.text.stopwords import STOPWORDS
from bastion.text.threat import TextThreatModel
from bastion.text.words import char_edit_distance, split_words, transformations

__all__ = [
    "PartOfSpeech",
    "Resources",
    "SentenceEncoder",
    "WordSimilarity",
    "normalise_word",
    "sentence_violations",
    "strip_invisible",
    "violations",
]


class WordSimilarity(Protocol):
    """Word embeddings: cosine similarity of two words, None when either is out of vocabulary."""

    def similarity(self, a: str, b: str) -> float | None: ...


class SentenceEncoder(Protocol):
    """A sentence encoder: cosine similarities of aligned pairs of texts, (N,) floats."""

    def similarities(self, a: Sequence[str], b: Sequence[str]) -> list[float]: ...


class PartOfSpeech(Protocol):
    """The parts of speech a word can take (e.g. WordNet's {"n", "v", "a", "r"}); empty when unknown."""

    def parts_of_speech(self, word: str) -> frozenset[str]: ...


def strip_invisible(text: str) -> str:
    """``text`` without characters a reader does not see: format characters (category Cf: zero-width,
    bidi controls, soft hyphen) and the other default-ignorable code points (variation selectors...)."""
    if text.isascii():  # none of them is ASCII; the verifier calls this on every candidate edit
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf" and not is_default_ignorable(c))


def normalise_word(word: str) -> str:
    """Lower case without invisible characters: how stop words and lexicon look-ups see a word."""
    return strip_invisible(word).lower()


@dataclass(frozen=True)
class Resources:
    """Language resources the constraints read; attacks and the verifier share one value."""

    stopwords: frozenset[str] = STOPWORDS
    embeddings: WordSimilarity | None = None
    encoder: SentenceEncoder | None = None
    pos: PartOfSpeech | None = None

    def require(self, threat: TextThreatModel) -> None:
        """Raise :class:`ThreatModelError` when ``threat`` asks for a check no resource here can make."""
        if threat.min_word_similarity is not None and self.embeddings is None:
            raise ThreatModelError(
                "the threat model asks for min_word_similarity but no word embeddings were given; "
                "pass Resources(embeddings=...) or set min_word_similarity=None (and say so in the report)"
            )
        if threat.min_sentence_similarity is not None and self.encoder is None:
            raise ThreatModelError(
                "the threat model asks for min_sentence_similarity but no sentence encoder was given; "
                "pass Resources(encoder=...) or set min_sentence_similarity=None (and say so in the report)"
            )
        if threat.same_pos and self.pos is None:
            raise ThreatModelError(
                "the threat model asks for same_pos but no part-of-speech source was given; "
                "pass Resources(pos=...) or set same_pos=False"
            )


def _pairs(original: str, adversarial: str) -> tuple[list[tuple[str, str]], list[str], int]:
    """Aligned (old word, new word) substitutions, original words dropped or merged, and word count."""
    a = [w.text for w in split_words(original)]
    b = [w.text for w in split_words(adversarial)]
    subs: list[tuple[str, str]] = []
    other: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "replace" and i2 - i1 == j2 - j1:
            subs.extend(zip(a[i1:i2], b[j1:j2], strict=True))
        elif op in ("replace", "delete"):
            other.extend(a[i1:i2])
    return subs, other, len(a)


def violations(
    original: str, adversarial: str, threat: TextThreatModel, resources: Resources | None = None
) -> list[str]:
    """Every constraint of ``threat`` that ``adversarial`` breaks, as short phrases; [] when valid.

    Checked: the Levenshtein budget, the share of words changed, edits per word, stop words, that a
    word-only threat changed whole words only (no character edits inside kept words), that an
    invisible-only threat added nothing visible, and the similarity / part-of-speech constraints.
    Sentence similarity is checked by :func:`sentence_violations` in batches (an encoder is costly).
    """
    res = resources or Resources()
    out: list[str] = []
    if adversarial == original:
        return out
    if threat.max_char_edits is not None:
        d = char_edit_distance(original, adversarial, cap=threat.max_char_edits)
        if d > threat.max_char_edits:
            out.append(f"more than {threat.max_char_edits} character edits")
    if threat.edits == {"invisible"} and strip_invisible(adversarial) != strip_invisible(original):
        out.append("a visible change under an invisible-characters-only threat")
    subs, other, n_words = _pairs(original, adversarial)
    changed = len(subs) + len(other)
    if threat.max_words_changed is not None and changed > threat.max_words_changed * max(n_words, 1) + 1e-9:
        out.append(f"{changed} of {n_words} words changed (> {threat.max_words_changed:.0%})")
    if threat.keep_stopwords and any(
        normalise_word(w) in res.stopwords for w, _ in subs + [(o, "") for o in other]
    ):
        out.append("a stop word was edited")
    per_word = threat.max_edits_per_word
    if per_word is not None and any(transformations(w, v) > per_word for w, v in subs):
        out.append(f"more than {per_word} edits in one word")
    if not threat.char_level and (other or strip_invisible(adversarial) != adversarial):
        out.append("words were split, merged or dropped under a word-substitution-only threat")
    if threat.min_word_similarity is not None and res.embeddings is not None:
        for w, v in subs:
            s = res.embeddings.similarity(normalise_word(w), normalise_word(v))
            if s is None or s < threat.min_word_similarity:
                out.append(f"{w!r} -> {v!r} below word similarity {threat.min_word_similarity:g}")
                break
    if threat.same_pos and res.pos is not None:
        for w, v in subs:
            if not res.pos.parts_of_speech(normalise_word(w)) & res.pos.parts_of_speech(normalise_word(v)):
                out.append(f"{w!r} -> {v!r} shares no part of speech")
                break
    return out


def sentence_violations(
    originals: Sequence[str], adversarials: Sequence[str], threat: TextThreatModel, resources: Resources
) -> list[bool]:
    """Per pair, True when the sentence similarity is below ``threat.min_sentence_similarity``."""
    if threat.min_sentence_similarity is None:
        return [False] * len(originals)
    encoder = resources.encoder
    if encoder is None:
        resources.require(threat)  # raises, naming the fix
        return [True] * len(originals)
    sims = encoder.similarities(list(originals), list(adversarials))
    return [s < threat.min_sentence_similarity for s in sims]
