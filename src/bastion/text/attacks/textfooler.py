"""TextFooler: greedy word-importance synonym substitution (Jin et al. 2020, "Is BERT Really Robust? A
Strong Baseline for Natural Language Attack on Text Classification and Entailment", AAAI).

Words are ranked by deletion importance (the true class's probability drop when the word is removed,
plus the new class's gain where removal flips the prediction; stop words are skipped when the threat
keeps them). In that order, each word's candidates are its ``candidates`` nearest neighbours in the word
embeddings with cosine >= ``min_cosine`` (paper: N = 50, delta = 0.5; the threat's
``min_word_similarity`` raises it); candidates that break the threat -- part of speech, word and
sentence similarity, share of words changed -- are dropped by the verifier *before* any query, and the
rest are scored in one batched call. If some flip the prediction, the one most similar to the original
under the sentence encoder is returned (the lowest true-class probability without an encoder); else the
one that lowers the true class's probability most is kept and the next word is tried.

Differences from the paper, said so reports can: the embeddings are GloVe 6B 50d, not counter-fitted
vectors (GloVe keeps antonyms close: "good" ~ "bad"); the part-of-speech check is context-free (WordNet's
possible parts of speech of each word, not a tagger's reading of the sentence); the sentence encoder is
whatever ``Resources.encoder`` holds (see :mod:`bastion.text.encoders`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from bastion.errors import AttackError
from bastion.text.attacks._importance import greedy_word_edits
from bastion.text.attacks.base import BudgetedTextClassifier, TextAttack
from bastion.text.constraints import Resources, normalise_word
from bastion.text.lexicon.embeddings import WordEmbeddings
from bastion.text.threat import TextThreatModel
from bastion.text.words import Word

__all__ = ["TextFooler", "match_case"]


def match_case(original: str, new: str) -> str:
    """``new`` written in ``original``'s case pattern: "Good" -> "Fine", "GOOD" -> "FINE"."""
    if original.isupper() and len(original) > 1:
        return new.upper()
    if original[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


class TextFooler(TextAttack):
    """``TextFooler(candidates=50, min_cosine=0.5)(model, texts, labels, threat)``.

    Candidates come from ``embeddings`` (default: ``resources.embeddings``, which must be a
    :class:`WordEmbeddings`; :func:`bastion.text.resources.offline_resources` loads GloVe). Deterministic:
    the seed changes nothing (ties go to the nearer neighbour, then to text order).
    """

    name: ClassVar[str] = "textfooler"
    family: ClassVar[str] = "textfooler"
    uses: ClassVar[frozenset[str]] = frozenset({"synonym"})

    def __init__(
        self,
        *,
        candidates: int = 50,
        min_cosine: float = 0.5,
        embeddings: WordEmbeddings | None = None,
        resources: Resources | None = None,
        max_queries: int | None = None,
    ) -> None:
        super().__init__(resources=resources, max_queries=max_queries)
        if candidates < 1:
            raise AttackError(f"candidates must be >= 1, got {candidates}")
        if not -1.0 <= min_cosine <= 1.0:
            raise AttackError(f"min_cosine is a cosine in [-1, 1], got {min_cosine}")
        emb = embeddings if embeddings is not None else self.resources.embeddings
        if not isinstance(emb, WordEmbeddings):
            raise AttackError(
                "TextFooler draws candidates from word embeddings: pass embeddings=WordEmbeddings..., or "
                "resources=offline_resources(threat, embeddings=True) (bastion.text.resources)"
            )
        self.candidates, self.min_cosine, self.embeddings = candidates, min_cosine, emb

    def params(self) -> dict[str, Any]:
        return {**super().params(), "candidates": self.candidates, "min_cosine": self.min_cosine,
                "embeddings": repr(self.embeddings)}  # fmt: skip

    def neighbours(self, word: str, threat: TextThreatModel) -> list[str]:
        """Substitutes for ``word``: nearest neighbours above the cosine floor, nearest first."""
        floor = max(self.min_cosine, threat.min_word_similarity or -1.0)
        near = self.embeddings.nearest(normalise_word(word), self.candidates)
        return [w for w, s in near if s >= floor]

    def _attack_one(
        self, model: BudgetedTextClassifier, text: str, label: int, threat: TextThreatModel,
        generator: torch.Generator,
    ) -> str:  # fmt: skip
        def propose(current: str, word: Word, g: torch.Generator) -> list[str]:
            subs = [match_case(word.text, w) for w in self.neighbours(word.text, threat)]
            return [current[: word.start] + s + current[word.end :] for s in subs]

        return greedy_word_edits(model, text, label, threat, self.resources, propose, generator,
                                 method="delete", prefer_similar=True)  # fmt: skip
