"""Word-level attacks (TextFooler, PWWS) on a linear bag-of-words model with hand-made embeddings and a
hand-made synonym list: known answers by brute force over the candidate sets, verified successes,
strict <= paper, seeds, query accounting. No data or downloads needed."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from bastion.errors import AttackError, ThreatModelError
from bastion.text import Resources, TextThreatModel, violations
from bastion.text.attacks import PWWS, TextAttack, TextFooler
from bastion.text.attacks.textfooler import match_case
from bastion.text.constraints import normalise_word
from bastion.text.encoders import GloveSentenceEncoder
from bastion.text.lexicon import WordEmbeddings
from bastion.text.model import CountingTextClassifier
from bastion.text.stopwords import STOPWORDS
from bastion.text.words import replace_word, split_words

WEIGHTS = {"great": 2.5, "good": 2.0, "fine": 1.0, "okay": 0.2, "poor": -1.0, "bad": -2.0, "awful": -2.5,
           "dull": -1.5, "lively": 1.5}  # fmt: skip
# Adjectives on an arc (antonyms close, as in GloVe), nouns and verbs elsewhere: angle in degrees.
ANGLES = {"great": 0, "good": 10, "fine": 25, "okay": 35, "poor": 50, "bad": 58, "awful": 70, "dull": 80,
          "lively": 95, "film": 200, "movie": 210, "picture": 225, "plot": 300, "story": 310,
          "start": 150, "ending": 160, "cast": 250, "crew": 258}  # fmt: skip
POS = {w: frozenset({"a"}) for w in WEIGHTS} | {w: frozenset({"n"}) for w in ANGLES if w not in WEIGHTS}
POS["fine"] = frozenset({"a", "n"})  # "fine" is also a noun (a penalty)
SYNONYMS = {"great": ["fine", "good"], "good": ["fine", "okay", "poor"], "dull": ["okay", "fine"],
            "film": ["movie", "picture"], "lively": ["okay", "fine"], "fine": ["okay"],
            "plot": ["story"], "cast": ["crew"]}  # fmt: skip


class BagOfWords:
    """Linear sentiment: logits [-s, s], s = sum of word weights + 0.1 (ties count as positive)."""

    num_classes = 2

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        s = torch.tensor([sum(WEIGHTS.get(t, 0.0) for t in re.findall(r"\w+", x.lower())) + 0.1
                          for x in texts])  # fmt: skip
        return torch.stack([-s, s], dim=1)


class ToyLexicon:
    def synonyms(self, word: str, pos: str | None = None) -> list[str]:
        return list(SYNONYMS.get(word.lower(), []))


class ToyPOS:
    def parts_of_speech(self, word: str) -> frozenset[str]:
        return POS.get(word, frozenset())


def toy_embeddings() -> WordEmbeddings:
    vocab = list(ANGLES)
    rad = np.radians([ANGLES[w] for w in vocab])
    return WordEmbeddings(vocab, np.stack([np.cos(rad), np.sin(rad)], axis=1))


EMB = toy_embeddings()
TEXTS = ["a great film", "a good film but a dull start", "the plot was dull", "a fine cast and a lively crew",
         "great film , bad ending", "the movie was good", "a good film and a lively plot"]  # fmt: skip
LABELS = [1, 1, 0, 1, 1, 1, 1]
# Which texts each attack flips: PWWS's synonyms for "great" (fine, good) and for "fine"/"lively" (okay,
# fine) are too mild to flip texts 0 and 3; text 6 needs two of PWWS's swaps (good -> poor, lively -> okay).
EXPECTED = {"textfooler": [True] * 7, "pwws": [False, True, True, False, True, True, True]}
OPEN = TextThreatModel(frozenset({"synonym"}))  # stop words kept, nothing else


def textfooler(encoder: bool = False) -> TextFooler:
    res = Resources(embeddings=EMB, pos=ToyPOS(), encoder=GloveSentenceEncoder(EMB) if encoder else None)
    return TextFooler(resources=res)


def pwws(encoder: bool = False) -> PWWS:
    res = Resources(embeddings=EMB, pos=ToyPOS(), encoder=GloveSentenceEncoder(EMB) if encoder else None)
    return PWWS(lexicon=ToyLexicon(), resources=res)


def candidates(attack: TextAttack, text: str, threat: TextThreatModel) -> list[tuple[str, float]]:
    """Every valid one-word substitution of ``text`` the attack can propose, with its true-class drop
    (for label 1: the fall of the logit s, monotone in the probability)."""
    out = []
    for w in split_words(text):
        if normalise_word(w.text) in STOPWORDS:
            continue
        if isinstance(attack, TextFooler):
            subs = attack.neighbours(w.text, threat)
        else:
            subs = ToyLexicon().synonyms(w.text)
        for s in subs:
            c = replace_word(text, w, match_case(w.text, s))
            if not violations(text, c, threat, attack.resources):
                out.append((c, float(BagOfWords()([text])[0, 1] - BagOfWords()([c])[0, 1])))
    return out


def flips(text: str, label: int) -> bool:
    return int(BagOfWords()([text]).argmax()) != label


@pytest.mark.parametrize("make", [textfooler, pwws], ids=["textfooler", "pwws"])
def test_finds_a_flip_whenever_one_substitution_flips(make: type[TextAttack]) -> None:
    attack = make()
    res = attack(BagOfWords(), TEXTS, LABELS, OPEN)
    assert res.clean_accuracy == 1.0
    for i, text in enumerate(TEXTS):
        brute = any(flips(c, LABELS[i]) for c, _ in candidates(attack, text, OPEN))
        if brute:
            assert bool(res.success[i]), res.show(i)
        if bool(res.success[i]):
            assert violations(text, res.adversarials[i], OPEN, attack.resources) == []
            assert flips(res.adversarials[i], LABELS[i])
        else:
            assert res.adversarials[i] == text
    assert res.success.tolist() == EXPECTED[attack.name]
    if attack.name == "pwws":  # no single swap flips text 6, two do
        assert not any(flips(c, 1) for c, _ in candidates(attack, TEXTS[6], OPEN))
        assert res.adversarials[6] == "a poor film and a okay plot"


def test_textfooler_one_word_is_the_biggest_drop_or_the_most_similar_flip() -> None:
    one = TextThreatModel(frozenset({"synonym"}), max_words_changed=0.34)  # 1 of 3 words
    # Without an encoder: the biggest drop of the most important word = brute force's best.
    best = max(candidates(textfooler(), "a great film", one), key=lambda c: c[1])[0]
    res = textfooler()(BagOfWords(), ["a great film"], [1], one)
    assert best == "a bad film" and res.adversarials[0] == best and bool(res.success[0])
    # With an encoder: of the flips (poor, bad), the one most similar to the original.
    res = textfooler(encoder=True)(BagOfWords(), ["a great film"], [1], one)
    assert res.adversarials[0] == "a poor film" and bool(res.success[0])
    # Candidates that break the threat are never queried: clean + importance (text + 2 deletions) +
    # the valid candidates of "great" (the most important word), which flip at once.
    model = CountingTextClassifier(BagOfWords())
    paper = TextThreatModel.for_attack("textfooler")
    res = textfooler(encoder=True)(model, ["a great film"], [1], paper)
    valid = [c for c, _ in candidates(textfooler(encoder=True), "a great film", paper) if "film" in c]
    sims = GloveSentenceEncoder(EMB).similarities(["a great film"] * len(valid), valid)
    valid = [c for c, s in zip(valid, sims, strict=True) if s >= 0.84]
    assert 0 < len(valid) < len(textfooler().neighbours("great", OPEN))  # some were filtered
    assert int(res.queries[0]) == 1 + 3 + len(valid) and bool(res.success[0])
    # Case is kept: the capitalised word's substitute is capitalised.
    res = textfooler()(BagOfWords(), ["Great film"], [1], OPEN)
    assert res.adversarials[0] == "Bad film"


def test_pwws_known_answer_by_brute_force() -> None:
    text, label = "a good film but a dull start", 1
    one = TextThreatModel(frozenset({"synonym"}), max_words_changed=0.15)  # 1 of 7 words
    # Brute force: saliency S (word -> [UNK], i.e. its weight leaves), best synonym drop, H = softmax(S) dP.
    words = [w for w in split_words(text) if w.text not in STOPWORDS]
    p = BagOfWords()([text]).softmax(1)[0, label]
    sal = [float(p - BagOfWords()([replace_word(text, w, "[UNK]")]).softmax(1)[0, label]) for w in words]
    z = sum(math.exp(s) for s in sal)
    best: dict[int, tuple[float, str]] = {}
    for k, w in enumerate(words):
        for s in ToyLexicon().synonyms(w.text):
            c = replace_word(text, w, s)
            d = float(p - BagOfWords()([c]).softmax(1)[0, label])
            if k not in best or d > best[k][0]:
                best[k] = (d, c)
    h = {k: math.exp(sal[k]) / z * d for k, (d, _) in best.items()}
    top = max(h, key=lambda k: h[k])
    assert words[top].text == "good" and best[top][1] == "a poor film but a dull start"
    res = pwws()(BagOfWords(), [text], [label], one)
    assert res.adversarials[0] == best[top][1] and bool(res.success[0])


@pytest.mark.parametrize("make", [textfooler, pwws], ids=["textfooler", "pwws"])
def test_strict_never_beats_paper_and_every_success_is_valid(make: type[TextAttack]) -> None:
    attack = make(encoder=True)  # type: ignore[call-arg]
    rates = []
    for strict in (False, True):
        threat = TextThreatModel.for_attack(attack.family, strict=strict)
        res = attack(BagOfWords(), TEXTS, LABELS, threat)
        assert bool(res.valid.all()), res.violations
        for i in range(len(res)):
            if bool(res.success[i]):
                assert violations(res.originals[i], res.adversarials[i], threat, attack.resources) == []
        rates.append(res.success_rate)
    assert rates[1] <= rates[0] and rates[0] > 0.5


@pytest.mark.parametrize("make", [textfooler, pwws], ids=["textfooler", "pwws"])
def test_queries_counted_and_seeded(make: type[TextAttack]) -> None:
    model = CountingTextClassifier(BagOfWords())
    res = make()(model, TEXTS, LABELS, OPEN, seed=5)
    # Every string sent is counted; the base class's re-verification (one per text) is not.
    assert model.queries == int(res.queries.sum()) + len(TEXTS)
    assert bool((res.queries > 1).all())
    again = make()(BagOfWords(), TEXTS, LABELS, OPEN, seed=5)
    other = make()(BagOfWords(), TEXTS, LABELS, OPEN, seed=6)  # deterministic algorithms
    assert res.adversarials == again.adversarials == other.adversarials
    assert res.queries.tolist() == again.queries.tolist()


def test_query_budget_and_bad_setups() -> None:
    res = TextFooler(resources=textfooler().resources, max_queries=2)(
        BagOfWords(), ["a good film but a dull start"], [1], OPEN
    )
    assert not bool(res.success[0]) and int(res.queries[0]) <= 3
    with pytest.raises(AttackError, match="embeddings"):
        TextFooler()
    with pytest.raises(AttackError):
        TextFooler(resources=Resources(embeddings=EMB), candidates=0)
    with pytest.raises(ThreatModelError, match="sentence encoder"):
        textfooler()(BagOfWords(), TEXTS, LABELS)  # the paper preset needs an encoder
    with pytest.raises(ThreatModelError, match="synonym"):
        pwws()(BagOfWords(), TEXTS, LABELS, TextThreatModel.for_attack("deepwordbug"))
    assert match_case("GOOD", "fine") == "FINE" and match_case("Good", "fine") == "Fine"
