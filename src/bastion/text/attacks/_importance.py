"""Black-box word importance and the greedy, scored, word-by-word edit search the text attacks share.

Word importance (one batched model call, ``len(words) + 1`` counted queries):

- ``"delete"``: TextFooler's deletion score (Jin et al. 2020, Eq. 2): the drop of the true class's
  probability when the word is removed, plus, where the removal flips the prediction, the rise of the
  new class's probability.
- ``"unk"``: DeepWordBug's Replace-1 score (Gao et al. 2018): the drop of the true class's probability
  when the word is replaced by an out-of-vocabulary token (``[UNK]``, as TextAttack's recipe does).

:func:`greedy_word_edits` walks the ranked words and, per word, scores every candidate edit in one call,
keeping the one that lowers the true class's probability most (if it lowers it at all), until the
prediction flips (optionally, among candidates that flip, the one most similar to the original under the
sentence encoder: TextFooler's choice). Candidates that break the threat model are dropped *before* they
are queried, with the same verifier the base class runs afterwards (word constraints by
:func:`violations`, sentence similarity by the same encoder and threshold as :func:`sentence_violations`),
so no query is spent on an edit that could not count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch

from bastion.errors import AttackError
from bastion.text.constraints import Resources, normalise_word, violations
from bastion.text.model import TextClassifier
from bastion.text.threat import TextThreatModel
from bastion.text.words import Word, char_edit_distance, split_words

__all__ = [
    "Importance",
    "ImportanceMethod",
    "greedy_word_edits",
    "skip_words",
    "true_class_probability",
    "word_importance",
]

ImportanceMethod = Literal["delete", "unk"]
UNK = "[UNK]"


@dataclass(frozen=True)
class Importance:
    """Words of a text ranked by importance (most important first), with the text's probabilities (K,)."""

    ranked: tuple[Word, ...]
    scores: tuple[float, ...]
    probs: torch.Tensor


def true_class_probability(model: TextClassifier, texts: list[str], label: int) -> torch.Tensor:
    """Softmax probabilities (N, K) of ``texts`` (one counted call per text)."""
    probs = model(texts).float().softmax(dim=1)
    if not 0 <= label < probs.shape[1]:
        raise AttackError(f"label {label} is outside the model's {probs.shape[1]} classes")
    return probs


def _without(text: str, word: Word, token: str) -> str:
    if token:
        return text[: word.start] + token + text[word.end :]
    left, right = text[: word.start].rstrip(" "), text[word.end :].lstrip(" ")
    return f"{left} {right}" if left and right else left + right


def word_importance(
    model: TextClassifier,
    text: str,
    label: int,
    *,
    method: ImportanceMethod = "delete",
    skip: frozenset[str] = frozenset(),
) -> Importance:
    """Rank the words of ``text`` by their importance for ``label`` (words in ``skip`` are left out).

    ``skip`` holds lower-cased words (stop words when the threat keeps them). Ties keep text order.
    """
    if method not in ("delete", "unk"):
        raise AttackError(f"unknown word-importance method {method!r}; use 'delete' or 'unk'")
    words = [w for w in split_words(text) if normalise_word(w.text) not in skip]
    variants = [_without(text, w, UNK if method == "unk" else "") for w in words]
    probs = true_class_probability(model, [text, *variants], label)
    base, rest = probs[0], probs[1:]
    score = base[label] - rest[:, label]
    if method == "delete" and len(words):
        # TextFooler: where deleting the word changes the prediction, add the new class's gain too.
        new = rest.argmax(dim=1)
        flipped = new != label
        gain = rest.gather(1, new[:, None])[:, 0] - base[new]
        score = torch.where(flipped, score + gain, score)
    order = sorted(range(len(words)), key=lambda i: -float(score[i]))
    return Importance(
        ranked=tuple(words[i] for i in order), scores=tuple(float(score[i]) for i in order), probs=base
    )


def skip_words(threat: TextThreatModel, resources: Resources) -> frozenset[str]:
    """The words an attack must leave alone under ``threat`` (stop words, when it keeps them)."""
    return resources.stopwords if threat.keep_stopwords else frozenset()


Propose = Callable[[str, Word, torch.Generator], list[str]]


def greedy_word_edits(
    model: TextClassifier,
    text: str,
    label: int,
    threat: TextThreatModel,
    resources: Resources,
    propose: Propose,
    generator: torch.Generator,
    *,
    method: ImportanceMethod = "unk",
    edits_per_word: int = 1,
    prefer_similar: bool = False,
) -> str:
    """Edit the most important words of ``text`` one at a time until the prediction flips.

    ``propose(current, word, generator)`` returns candidate texts: ``current`` with one more edit inside
    ``word`` (a span of ``current``), the rest unchanged, the number of words unchanged. A word is edited
    up to ``edits_per_word`` times in a row. With ``prefer_similar`` (and an encoder in ``resources``),
    of the candidates that flip the prediction the one most similar to ``text`` wins, not the one with
    the lowest true-class probability. Returns the adversarial text, or ``text`` when none flips.
    """
    imp = word_importance(model, text, label, method=method, skip=skip_words(threat, resources))
    words = split_words(text)
    position = {w: i for i, w in enumerate(words)}  # a word's index stays put: edits keep the count
    current, p_true = text, float(imp.probs[label])
    spent = 0  # Levenshtein edits of the accepted edits: an upper bound of current's distance to text
    for word in imp.ranked:
        index = position[word]
        for _ in range(edits_per_word):
            span = split_words(current)[index]
            candidates = [
                c
                for c in dict.fromkeys(propose(current, span, generator))
                if c != current
                and len(split_words(c)) == len(words)
                and not violations(text, c, _cheap(threat, spent, current, span, c), resources)
            ]
            sims = _similarities(text, candidates, threat, resources, prefer_similar)
            if sims is not None and threat.min_sentence_similarity is not None:
                keep = [i for i, s in enumerate(sims) if not s < threat.min_sentence_similarity]
                candidates, sims = [candidates[i] for i in keep], [sims[i] for i in keep]
            if not candidates:
                break
            probs = true_class_probability(model, candidates, label)
            flips = [i for i in range(len(candidates)) if int(probs[i].argmax()) != label]
            if flips and sims is not None and prefer_similar:
                return candidates[max(flips, key=lambda i: (sims[i], -i))]  # ties: the first
            best = int(probs[:, label].argmin())
            if float(probs[best, label]) >= p_true:
                break  # no candidate helps: leave the word as it is
            spent += _word_distance(current, span, candidates[best])
            current, p_true = candidates[best], float(probs[best, label])
            if int(probs[best].argmax()) != label:
                return current
    return text


def _word_distance(current: str, word: Word, candidate: str) -> int:
    """Edit distance of ``candidate`` to ``current`` where it differs only inside ``word``'s span."""
    new = candidate[word.start : len(candidate) - (len(current) - word.end)]
    return char_edit_distance(word.text, new)


def _cheap(threat: TextThreatModel, spent: int, current: str, word: Word, candidate: str) -> TextThreatModel:
    """``threat`` without its character budget when the triangle inequality already proves it kept.

    The full-text Levenshtein check is the verifier's costly part (O(length x budget) per candidate);
    ``spent`` + this edit bounds the candidate's distance to the original from above.
    """
    cap = threat.max_char_edits
    if cap is not None and spent + _word_distance(current, word, candidate) <= cap:
        return replace(threat, max_char_edits=None)
    return threat


def _similarities(
    text: str, candidates: list[str], threat: TextThreatModel, resources: Resources, wanted: bool
) -> list[float] | None:
    """Sentence similarities of ``candidates`` to ``text`` when the threat or the caller needs them."""
    if not candidates or resources.encoder is None:
        return None
    if threat.min_sentence_similarity is None and not wanted:
        return None
    return list(resources.encoder.similarities([text] * len(candidates), candidates))
