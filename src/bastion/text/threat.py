"""The text threat model: which edits an attacker may make, how many, and what a valid adversarial keeps.

One value, read by every text attack, checked by the attack base class on every result and printed with
it. Two presets per attack family: ``paper`` (the constraint thresholds the attack's paper used, as
TextAttack's recipes encode them) and ``strict`` (tighter thresholds in the spirit of Morris et al. 2020,
"Reevaluating Adversarial Examples in Natural Language": loose constraints make success rates count
sentences a reader would not accept as the same meaning).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from bastion.errors import ThreatModelError

__all__ = ["CHAR_EDITS", "EDITS", "WORD_EDITS", "TextThreatModel"]

# Character edits: visible typos (DeepWordBug), look-alike letters and characters a reader never sees
# (zero-width, bidi controls; Boucher et al. 2022, "Bad Characters").
CHAR_EDITS = ("insert", "delete", "swap", "substitute", "homoglyph", "invisible")
WORD_EDITS = ("synonym",)
EDITS = CHAR_EDITS + WORD_EDITS

Family = Literal["deepwordbug", "invisible", "homoglyph", "textfooler", "pwws"]


@dataclass(frozen=True)
class TextThreatModel:
    """What a text attacker may do (``edits``) and what every adversarial text must satisfy.

    - ``edits``: allowed edit kinds, from :data:`EDITS`.
    - ``max_char_edits``: Levenshtein distance between original and adversarial, at most (None: no cap).
    - ``max_words_changed``: share of the original's words that may change, in (0, 1] (None: no cap).
    - ``max_edits_per_word``: typos inside one word, at most, where swapping two adjacent letters is one
      (optimal string alignment; None: no cap). ``max_char_edits`` counts a swap as two, as Levenshtein does.
    - ``min_word_similarity``: cosine similarity of a substituted word to the original in the word
      embeddings, at least (needs embeddings; None: unchecked).
    - ``min_sentence_similarity``: sentence-encoder cosine similarity of the whole texts, at least (needs a
      sentence encoder; None: unchecked).
    - ``same_pos``: a substitute must share a part of speech with the word it replaces.
    - ``keep_stopwords``: stop words are never edited.
    - ``preset``: the name of the preset this came from ("custom" otherwise), reported with results.
    """

    edits: frozenset[str]
    max_char_edits: int | None = None
    max_words_changed: float | None = None
    max_edits_per_word: int | None = None
    min_word_similarity: float | None = None
    min_sentence_similarity: float | None = None
    same_pos: bool = False
    keep_stopwords: bool = True
    preset: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        edits = frozenset(str(e).strip().lower() for e in self.edits)
        unknown = sorted(edits - set(EDITS))
        if unknown:
            raise ThreatModelError(
                f"unknown text edit(s) {', '.join(unknown)}; use some of: {', '.join(EDITS)}"
            )
        if not edits:
            raise ThreatModelError(
                f"a text threat model allows at least one edit; choose from: {', '.join(EDITS)}"
            )
        object.__setattr__(self, "edits", edits)
        for name in ("max_char_edits", "max_edits_per_word"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ThreatModelError(f"{name} must be a whole number >= 1 or None, got {v!r}")
        share = self.max_words_changed
        if share is not None and not 0.0 < share <= 1.0:
            raise ThreatModelError(f"max_words_changed is a share of the words, in (0, 1]; got {share}")
        for name in ("min_word_similarity", "min_sentence_similarity"):
            v = getattr(self, name)
            if v is not None and not -1.0 <= v <= 1.0:
                raise ThreatModelError(f"{name} is a cosine similarity in [-1, 1] or None, got {v}")

    @property
    def char_level(self) -> bool:
        return bool(self.edits & set(CHAR_EDITS))

    @property
    def word_level(self) -> bool:
        return bool(self.edits & set(WORD_EDITS))

    def allows(self, edit: str) -> bool:
        return edit in self.edits

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["edits"] = sorted(self.edits)
        return d

    def describe(self) -> str:
        """One line for reports: ``textfooler/paper: synonym; word sim >= 0.5; ...``."""
        parts = [", ".join(sorted(self.edits))]
        if self.max_char_edits is not None:
            parts.append(f"<= {self.max_char_edits} character edits")
        if self.max_edits_per_word is not None:
            parts.append(f"<= {self.max_edits_per_word} per word")
        if self.max_words_changed is not None:
            parts.append(f"<= {self.max_words_changed:.0%} of words")
        if self.min_word_similarity is not None:
            parts.append(f"word similarity >= {self.min_word_similarity:g}")
        if self.min_sentence_similarity is not None:
            parts.append(f"sentence similarity >= {self.min_sentence_similarity:g}")
        if self.same_pos:
            parts.append("same part of speech")
        if self.keep_stopwords:
            parts.append("stop words kept")
        return f"{self.preset}: " + "; ".join(parts)

    @classmethod
    def for_attack(cls, family: Family | str, strict: bool = False) -> TextThreatModel:
        """The preset for an attack family: ``paper`` thresholds, or ``strict`` ones.

        Paper values: DeepWordBug (Gao et al. 2018) as TextAttack's recipe encodes it — Levenshtein <= 30,
        one edit per word, stop words kept; invisible characters and homoglyphs (Boucher et al. 2022) — a
        budget of 5 injected/replaced characters; TextFooler (Jin et al. 2020) — word-embedding cosine >=
        0.5, sentence-encoder similarity >= 0.84, same part of speech; PWWS (Ren et al. 2019) — WordNet
        synonyms, stop words kept, nothing else.
        Strict values: word similarity >= 0.9 and sentence similarity >= 0.98 (Morris et al. 2020's
        recommendation for TextFooler) and at most 10% of words changed for word attacks; PWWS strict
        also keeps the part of speech; DeepWordBug strict allows 5 visible edits on at most 20% of the words;
        invisible characters and homoglyphs strict allow 2.
        """
        key = str(family).strip().lower()
        name = f"{key}/{'strict' if strict else 'paper'}"
        if key == "deepwordbug":
            base = cls(frozenset({"insert", "delete", "swap", "substitute"}), max_char_edits=30,
                       max_edits_per_word=1, preset=name)  # fmt: skip
            return replace(base, max_char_edits=5, max_words_changed=0.2) if strict else base
        if key in ("invisible", "homoglyph"):
            base = cls(frozenset({key}), max_char_edits=5, preset=name)
            return replace(base, max_char_edits=2) if strict else base
        if key == "textfooler":
            base = cls(frozenset({"synonym"}), min_word_similarity=0.5, min_sentence_similarity=0.84,
                       same_pos=True, preset=name)  # fmt: skip
            if strict:
                return replace(
                    base, min_word_similarity=0.9, min_sentence_similarity=0.98, max_words_changed=0.1
                )
            return base
        if key == "pwws":
            base = cls(frozenset({"synonym"}), preset=name)
            return replace(base, same_pos=True, max_words_changed=0.1) if strict else base
        raise ThreatModelError(
            f"no text threat preset for {family!r}; use one of: "
            "deepwordbug, invisible, homoglyph, textfooler, pwws"
        )
