"""PWWS: Probability Weighted Word Saliency (Ren et al. 2019, "Generating Natural Language Adversarial
Examples through Probability Weighted Word Saliency", ACL).

For every word ``w_i`` (stop words skipped when the threat keeps them):

- the best substitute ``w_i*``: of its WordNet synonyms, the one whose swap lowers the true class's
  probability most, ``dP_i* = P(y|x) - P(y|x_i*)`` (all candidates of all words in one batched call);
- the word saliency ``S_i = P(y|x) - P(y|x^_i)``, with ``x^_i`` the text with ``w_i`` replaced by an
  unknown token (one batched call);
- the score ``H_i = softmax(S)_i * dP_i*``.

Words are then substituted by their ``w_i*`` in descending ``H`` order, one query after each swap,
until the prediction flips. Candidates that break the threat (stop words, part of speech, word and
sentence similarity, share of words changed) are dropped by the verifier before they are queried, and a
swap that would make the accumulated text invalid is skipped. Words with no synonym that lowers the true
class's probability (``dP* <= 0``) are never swapped (the paper would swap them too; that only helps the
model). On failure the original text is returned.

Differences from the paper: synonyms come from every WordNet sense of the word (the paper picks senses
with a part-of-speech tagger; here ``same_pos`` filters by WordNet's context-free parts of speech), and
named-entity substitution (the paper's second candidate source) is not implemented.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from bastion.errors import AttackError
from bastion.text.attacks._importance import skip_words, true_class_probability, word_importance
from bastion.text.attacks.base import BudgetedTextClassifier, TextAttack
from bastion.text.attacks.textfooler import match_case
from bastion.text.constraints import Resources, normalise_word, sentence_violations, violations
from bastion.text.lexicon import Lexicon, WordNetLexicon
from bastion.text.threat import TextThreatModel
from bastion.text.words import replace_word, split_words

__all__ = ["PWWS"]


class PWWS(TextAttack):
    """``PWWS()(model, texts, labels, threat)``: WordNet synonyms, saliency-weighted greedy order.

    ``lexicon``: the synonym source (default: :class:`WordNetLexicon` over Debian's WordNet, loaded on
    first use); ``max_candidates`` caps the synonyms tried per word (WordNet's order: frequent senses
    first; None: all). Deterministic: the seed changes nothing.
    """

    name: ClassVar[str] = "pwws"
    family: ClassVar[str] = "pwws"
    uses: ClassVar[frozenset[str]] = frozenset({"synonym"})

    def __init__(
        self,
        *,
        lexicon: Lexicon | None = None,
        max_candidates: int | None = None,
        resources: Resources | None = None,
        max_queries: int | None = None,
    ) -> None:
        super().__init__(resources=resources, max_queries=max_queries)
        if max_candidates is not None and max_candidates < 1:
            raise AttackError(f"max_candidates must be >= 1 or None, got {max_candidates}")
        self._lexicon = lexicon
        self.max_candidates = max_candidates

    @property
    def lexicon(self) -> Lexicon:
        if self._lexicon is None:
            self._lexicon = WordNetLexicon()  # raises DataError naming the install command when absent
        return self._lexicon

    def params(self) -> dict[str, Any]:
        return {**super().params(), "lexicon": repr(self._lexicon) if self._lexicon else "WordNetLexicon",
                "max_candidates": self.max_candidates}  # fmt: skip

    def _valid(self, text: str, candidates: list[str], threat: TextThreatModel) -> list[str]:
        ok = [c for c in candidates if c != text and not violations(text, c, threat, self.resources)]
        far = sentence_violations([text] * len(ok), ok, threat, self.resources) if ok else []
        return [c for c, f in zip(ok, far, strict=True) if not f]

    def _attack_one(
        self, model: BudgetedTextClassifier, text: str, label: int, threat: TextThreatModel,
        generator: torch.Generator,
    ) -> str:  # fmt: skip
        words = split_words(text)
        imp = word_importance(model, text, label, method="unk", skip=skip_words(threat, self.resources))
        if not imp.ranked:
            return text
        index = {w: i for i, w in enumerate(words)}
        saliency = torch.softmax(torch.tensor(imp.scores), dim=0)  # softmax over every considered word
        p0 = float(imp.probs[label])
        # Every word's valid one-swap candidates, scored together in one call.
        owner: list[int] = []
        texts: list[str] = []
        for k, word in enumerate(imp.ranked):
            syn = self.lexicon.synonyms(normalise_word(word.text))[: self.max_candidates]
            cands = self._valid(text, [replace_word(text, word, match_case(word.text, s)) for s in syn],
                                threat)  # fmt: skip
            owner += [k] * len(cands)
            texts += cands
        if not texts:
            return text
        drop = p0 - true_class_probability(model, texts, label)[:, label]
        best: dict[int, tuple[float, str]] = {}
        for j, k in enumerate(owner):  # first (most frequent sense) wins ties
            if k not in best or float(drop[j]) > best[k][0]:
                best[k] = (float(drop[j]), texts[j])
        scores = {k: float(saliency[k]) * d for k, (d, _) in best.items() if d > 0}
        order = sorted(scores, key=lambda k: (-scores[k], index[imp.ranked[k]]))
        current = text
        for k in order:
            word = imp.ranked[k]
            new_word = split_words(best[k][1])[index[word]].text
            candidate = replace_word(current, split_words(current)[index[word]], new_word)
            if not self._valid(text, [candidate], threat):
                continue  # this swap on top of the others would break the threat: skip the word
            current = candidate
            if int(true_class_probability(model, [current], label)[0].argmax()) != label:
                return current
        return text
