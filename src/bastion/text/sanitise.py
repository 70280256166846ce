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
text is a fixed point. A prototype shared by several ASCII characters ("l" stands for l, I, 1 and |;
"O" for O and 0; "rn" for m) is read back as the member that matches the look-alike's own case or
digit-ness (Cyrillic "І" -> "I", "ⅼ" -> "l", a digit-like "O" -> "0"), so "Іt" comes back as "It".

Mapping comes before NFKC on purpose: the attacker chose a character for how it *looks*, and where NFKC
and the confusables table disagree (long s "ſ": NFKC "s", looks like "f") the look is what the reader saw.
The skeleton is for Latin-script models: it maps genuine Cyrillic or Greek words to Latin letters too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from bastion.text.confusables import confusables_table, is_default_ignorable, skeleton
from bastion.text.model import TextClassifier, check_texts

__all__ = ["SanitisedTextClassifier", "Sanitiser", "nfkc_only"]

# The ASCII strings each prototype stands for (the skeleton is not injective on ASCII).
_ASCII = [chr(i) for i in range(0x20, 0x7F)] + ["rn"]


@lru_cache(maxsize=1)
def _ascii_classes() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for s in _ASCII:
        out.setdefault(skeleton(s), []).append(s)
    return {k: tuple(v) for k, v in out.items()}


def _pick(char: str, proto: str) -> str:
    """The ASCII reading of ``char`` whose prototype is ``proto``: the class member of ``char``'s kind."""
    members = _ascii_classes().get(proto, ())
    if len(members) < 2:
        return proto
    cat = unicodedata.category(char)
    want = {"Lu": str.isupper, "Lt": str.isupper, "Ll": str.islower, "Nd": str.isdigit, "No": str.isdigit}
    test = want.get(cat)
    single = [m for m in members if len(m) == 1]
    if test is not None:
        hit = [m for m in single if test(m)]
        if hit:
            return hit[0]
    return single[0] if cat.startswith("L") and single and proto not in single else proto


@lru_cache(maxsize=4096)
def _map_char(char: str) -> str:
    """A non-ASCII character through the confusables table (NFD, map, NFC); ASCII where it can be."""
    table = confusables_table()
    mapped = "".join(table.get(c, c) for c in unicodedata.normalize("NFD", char))
    mapped = unicodedata.normalize("NFC", unicodedata.normalize("NFD", mapped))
    return _pick(char, mapped) if mapped.isascii() else mapped


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

    def sanitise(self, text: str) -> str:
        """One text, sanitised."""
        if text.isascii() and (not self.strip_format or _only_space_controls(text)):
            return text  # the common case, and the fixed point: ASCII is never mapped
        out = text
        if self.strip_format:
            out = "".join(c for c in out if not _invisible(c))
        if self.skeleton:
            out = "".join(c if c.isascii() else _map_char(c) for c in out)
        if self.nfkc:
            out = unicodedata.normalize("NFKC", out)
            if self.strip_format:  # NFKC can compose or expose nothing invisible, but stay certain
                out = "".join(c for c in out if not _invisible(c))
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


class SanitisedTextClassifier:
    """A :class:`TextClassifier` that sanitises its input first: ``model(sanitiser(texts))``.

    Attack it like any other text model; every string an attack sends is counted once, as sent.
    """

    def __init__(self, model: TextClassifier, sanitiser: Sanitiser | None = None) -> None:
        self.model = model
        self.sanitiser = sanitiser or Sanitiser()

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model(self.sanitiser(texts))
