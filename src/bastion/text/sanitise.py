"""A text sanitiser that undoes character tricks, applied in front of any text classifier.

The defence the "Bad Characters" paper (Boucher et al. 2022, IEEE S&P) recommends against imperceptible
perturbations, in three steps, each optional:

1. ``strip_format``: remove format characters (Cf: zero-width space/joiners, bidi controls, soft hyphen,
   tags), the other Default_Ignorable code points (variation selectors, fillers) and control characters
   (Cc), keeping ordinary whitespace (tab, newline, ...).
2. ``skeleton``: map every *non-ASCII* character through the UTS #39 confusables table
   (:mod:`bastion.text.confusables`): Cyrillic "а" -> "a", Greek "Ο" -> "O", "ꓲ" -> "I".
3. ``nfkc``: Unicode NFKC (full-width and mathematical letters, ligatures, compatibility spaces).

Why ASCII is never mapped: UTS #39's skeleton is a key for *comparing* strings and folds ordinary ASCII
too ("m" -> "rn", "I" and "1" -> "l", "0" -> "O"); applied to clean text it would rewrite "I" as "l" and
"modern" as "rnodern" and move clean accuracy. The tricks this undoes are non-ASCII by nature; an
ASCII-for-ASCII swap ("l" for "I") is a visible typo, DeepWordBug's threat, not this one. So clean ASCII
text is a fixed point.

A prototype shared by several ASCII characters ("l" stands for l, I, 1 and |; "O" for O and 0; "rn" for
m) needs a reading. Its word decides: among lower-case letters a look-alike reads as lower case ("bƖeak"
-> "bleak", though "Ɩ" is a capital), among capitals as a capital, among digits as a digit. At a word's
start it keeps its own kind when the text has capitals elsewhere or that reading is a stop word ("Іt is"
-> "It is"), and reads as lower case in lower-cased text ("Ɩove it" -> "love it"). That leaves a capital
look-alike of "l" at a word's start in cased text ("Ɩove It" -> "Iove It"): pass ``vocabulary`` (the
model's known words) and the reading that makes a known word wins ("love"). An adaptive attacker finds
exactly such gaps, so give it when you can.

Mapping comes before NFKC on purpose: the attacker chose a character for how it *looks*, and where NFKC
and the confusables table disagree (long s "ſ": NFKC "s", looks like "f") the look is what the reader saw.
The skeleton is for Latin-script models: it maps genuine Cyrillic or Greek words to Latin letters too.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from bastion.text.confusables import confusables_table, is_default_ignorable, skeleton
from bastion.text.model import TextClassifier, check_texts
from bastion.text.stopwords import STOPWORDS
from bastion.text.tokenizer import PAD, UNK

__all__ = ["SanitisedTextClassifier", "Sanitiser", "model_vocabulary", "nfkc_only"]

# The ASCII strings each prototype stands for (the skeleton is not injective on ASCII).
_ASCII = [chr(i) for i in range(0x20, 0x7F)] + ["rn"]


@lru_cache(maxsize=1)
def _ascii_classes() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for s in _ASCII:
        out.setdefault(skeleton(s), []).append(s)
    return {k: tuple(v) for k, v in out.items()}


_KIND = {"Lu": str.isupper, "Lt": str.isupper, "Ll": str.islower, "Nd": str.isdigit, "No": str.isdigit}


@lru_cache(maxsize=4096)
def _map_char(char: str) -> tuple[str, ...]:
    """A non-ASCII character through the confusables table (NFD, map, NFC): its readings, best first.

    One reading unless the prototype stands for several ASCII strings ("l": l, I, 1, |); then the members,
    the one of the character's own kind (upper/lower case, digit) first.
    """
    table = confusables_table()
    mapped = "".join(table.get(c, c) for c in unicodedata.normalize("NFD", char))
    mapped = unicodedata.normalize("NFC", unicodedata.normalize("NFD", mapped))
    members = _ascii_classes().get(mapped, ()) if mapped.isascii() else ()
    if len(members) < 2:
        return (mapped,)
    test = _KIND.get(unicodedata.category(char))
    single = [m for m in members if len(m) == 1]
    first = [m for m in single if test(m)] if test is not None else []
    if not first and unicodedata.category(char).startswith("L"):
        first = [m for m in single if m.isalpha() and m.islower()] or [m for m in single if m.isalpha()]
    first = first[:1] or [mapped]
    return tuple(first + [m for m in members if m not in first])


def _prefer(options: tuple[str, ...], test: Callable[[str], bool]) -> tuple[str, ...]:
    hit = [m for m in options if len(m) == 1 and test(m)]
    return tuple(hit[:1] + [m for m in options if m not in hit[:1]])


def _resolve(pieces: list[str], options: dict[int, tuple[str, ...]], vocabulary: frozenset[str]) -> None:
    """Pick a reading for every ambiguous piece, in place, from its word.

    A look-alike among lower-case letters reads as lower case ("bƖeak" -> "bleak", not "bIeak"), among
    capitals as a capital, among digits as a digit; at a word's start a capital keeps its case when the
    text has other capitals or the word is a stop word ("Іt" -> "It"). With a ``vocabulary``, the first
    combination of readings (in that order of preference) that makes a known word wins.
    """
    word = [p.isalnum() or (not p.isascii() and any(c.isalnum() for c in p)) for p in pieces]
    cased = any(p.isupper() for n, p in enumerate(pieces) if p.isascii() and n not in options)
    for i, opts in options.items():
        j, k = i - 1, i + 1
        while j >= 0 and word[j] and j in options:
            j -= 1
        while k < len(pieces) and word[k] and k in options:
            k += 1
        near = [pieces[n] for n in (j, k) if 0 <= n < len(pieces) and word[n] and n not in options]
        lo, hi = i, i + 1
        while lo > 0 and word[lo - 1]:
            lo -= 1
        while hi < len(pieces) and word[hi]:
            hi += 1
        as_is = "".join(pieces[lo:hi]).lower()
        title = lo == i and opts[0].isupper() and (cased or as_is in STOPWORDS)
        if any(n[-1:].islower() or n[:1].islower() for n in near) and not title:
            options[i] = _prefer(opts, str.islower)
        elif near and all(n.isupper() for n in near):
            options[i] = _prefer(opts, str.isupper)
        elif near and all(n.isdigit() for n in near):
            options[i] = _prefer(opts, str.isdigit)
        pieces[i] = options[i][0]
    if not vocabulary:
        return
    start = 0
    while start < len(pieces):  # each word with an ambiguous piece: try readings against the vocabulary
        end = start
        while end < len(pieces) and word[end]:
            end += 1
        slots = [i for i in range(start, end) if i in options]
        if slots and "".join(pieces[start:end]).lower() not in vocabulary:
            for combo in itertools.islice(itertools.product(*(options[i] for i in slots)), 64):
                trial = pieces[start:end]
                for i, reading in zip(slots, combo, strict=True):
                    trial[i - start] = reading
                if "".join(trial).lower() in vocabulary:
                    pieces[start:end] = trial
                    break
        start = end + 1


def _strip(text: str) -> str:
    return "".join(c for c in text if " " <= c <= "~" or not _invisible(c))


@lru_cache(maxsize=65536)
def _invisible(char: str) -> bool:
    cat = unicodedata.category(char)
    return cat == "Cf" or (cat == "Cc" and not char.isspace()) or is_default_ignorable(char)


@dataclass(frozen=True)
class Sanitiser:
    """``sanitiser(texts) -> texts``: removes invisible characters, maps look-alikes, NFKC-normalises.

    Guarantees: printable ASCII text with ordinary whitespace comes back unchanged; no output contains a
    format, control (other than whitespace) or default-ignorable character when ``strip_format`` is on.
    """

    nfkc: bool = True
    strip_format: bool = True
    skeleton: bool = True
    vocabulary: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", frozenset(w.lower() for w in self.vocabulary))

    def sanitise(self, text: str) -> str:
        """One text, sanitised."""
        if text.isascii() and (not self.strip_format or _only_space_controls(text)):
            return text  # the common case, and the fixed point: ASCII is never mapped
        out = text
        if self.strip_format:
            out = _strip(out)
        if self.skeleton:
            pieces: list[str] = []
            options: dict[int, tuple[str, ...]] = {}
            for c in out:
                if c.isascii():
                    pieces.append(c)
                    continue
                readings = _map_char(c)
                if len(readings) > 1:
                    options[len(pieces)] = readings
                pieces.append(readings[0])
            if options:
                _resolve(pieces, options, self.vocabulary)
            out = "".join(pieces)
        if self.nfkc:
            out = unicodedata.normalize("NFKC", out)
            if self.strip_format and not out.isascii():  # NFKC should expose nothing invisible: be certain
                out = _strip(out)
        return out

    def __call__(self, texts: Sequence[str]) -> list[str]:
        return [self.sanitise(t) for t in check_texts(texts, doing="sanitising")]

    def describe(self) -> str:
        steps = [s for s, on in (("strip format", self.strip_format), ("skeleton", self.skeleton),
                                 ("NFKC", self.nfkc)) if on]  # fmt: skip
        return " + ".join(steps) or "identity"


def _only_space_controls(text: str) -> bool:
    return all(c.isprintable() or c.isspace() for c in text)


def nfkc_only() -> Sanitiser:
    """NFKC alone, the baseline the issue compares against: it folds full-width and mathematical
    letters but leaves zero-width characters and most cross-script look-alikes (Cyrillic "а") alone."""
    return Sanitiser(nfkc=True, strip_format=False, skeleton=False)


def model_vocabulary(model: object) -> frozenset[str]:
    """The words ``model`` knows, where it says: a :class:`~bastion.text.WordTokenizer`'s vocabulary
    (without ``<pad>``/``<unk>``) or a scikit-learn vectorizer's single-word ``vocabulary_``, looked up
    through wrappers (``.model``, ``.estimator``, pipeline steps); empty when the model does not say."""
    seen: list[object] = [model]
    while seen:
        obj = seen.pop()
        vocab = getattr(getattr(obj, "tokenizer", None), "vocab", None)
        if isinstance(vocab, tuple | list) and all(isinstance(w, str) for w in vocab):
            return frozenset(w for w in vocab if w not in (PAD, UNK))
        words = getattr(obj, "vocabulary_", None)
        if isinstance(words, dict) and words:
            return frozenset(w for w in words if isinstance(w, str) and " " not in w)  # n-grams aside
        for attr in ("model", "estimator"):
            inner = getattr(obj, attr, None)
            if inner is not None and inner is not obj and len(seen) < 16:
                seen.append(inner)
        for step in getattr(obj, "steps", None) or ():
            if isinstance(step, tuple) and len(step) == 2:
                seen.append(step[1])
    return frozenset()


class SanitisedTextClassifier:
    """A :class:`TextClassifier` that sanitises its input first: ``model(sanitiser(texts))``.

    Without a ``sanitiser``, the default one with the model's own vocabulary
    (:func:`model_vocabulary`), which settles look-alikes that read as several ASCII letters ("Ɩ": l or I).
    Attack it like any other text model; every string an attack sends is counted once, as sent.
    """

    def __init__(self, model: TextClassifier, sanitiser: Sanitiser | None = None) -> None:
        self.model = model
        self.sanitiser = sanitiser or Sanitiser(vocabulary=model_vocabulary(model))

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model(self.sanitiser(texts))
