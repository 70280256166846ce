"""Character-level text attacks (DeepWordBug, invisible characters, homoglyphs) on a toy linear
bag-of-words model: flips within budget, verified successes, counted queries, seeds, the sanitiser."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
import torch

from bastion.errors import AttackError
from bastion.text import TextThreatModel, violations
from bastion.text.attacks import DeepWordBug, Homoglyphs, InvisibleCharacters, TextAttack
from bastion.text.attacks._importance import word_importance
from bastion.text.attacks.deepwordbug import keyboard_neighbours
from bastion.text.attacks.homoglyph import lookalikes
from bastion.text.model import CountingTextClassifier
from bastion.text.sanitise import SanitisedTextClassifier, Sanitiser, nfkc_only

WEIGHTS = {"good": 2.0, "great": 2.5, "fine": 1.0, "fun": 1.5, "bad": -2.0, "awful": -2.5, "dull": -1.5}


class BagOfWords:
    """Linear sentiment over lower-cased \\w+ tokens: logits [-s, s], s = sum of word weights + 0.1."""

    num_classes = 2

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        s = torch.tensor([sum(WEIGHTS.get(t, 0.0) for t in re.findall(r"\w+", x.lower())) + 0.1
                          for x in texts])  # fmt: skip
        return torch.stack([-s, s], dim=1)


# Each text holds a word of the other polarity, so removing its key words can flip it.
TEXTS = [
    "a good film with a great cast but a dull start",
    "the plot was awful and the acting bad",
    "good fun for the whole family despite a bad ending",
    "dull story and a bad ending",
    "the music is great but the story is dull",
    "great acting, bad script",
]
LABELS = [1, 0, 1, 0, 1, 1]
ATTACKS: list[TextAttack] = [DeepWordBug(), InvisibleCharacters(), Homoglyphs()]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_flips_within_budget_and_is_verified(attack: TextAttack) -> None:
    model = CountingTextClassifier(BagOfWords())
    res = attack(model, TEXTS, LABELS, seed=3)
    assert res.clean_accuracy == 1.0
    assert res.success_rate >= 0.8, [res.show(i) for i in range(len(res))]
    threat = TextThreatModel.for_attack(attack.family)
    for i in range(len(res)):
        if bool(res.success[i]):
            assert violations(res.originals[i], res.adversarials[i], threat) == []
            assert int(res.chars_changed[i]) <= (threat.max_char_edits or 10**9)
            assert int(BagOfWords()([res.adversarials[i]]).argmax()) != LABELS[i]
        else:
            assert res.adversarials[i] == res.originals[i]  # a failure returns the original
    # Every string sent is counted: the model's own counter equals the result's queries, plus the
    # base class's uncounted re-verification call (one per text).
    assert model.queries == int(res.queries.sum()) + len(TEXTS)
    assert bool((res.queries > 1).all())


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_same_seed_same_result(attack: TextAttack) -> None:
    a = attack(BagOfWords(), TEXTS, LABELS, seed=11)
    b = attack(BagOfWords(), TEXTS, LABELS, seed=11)
    assert a.adversarials == b.adversarials and a.queries.tolist() == b.queries.tolist()


def test_strict_budgets_hold() -> None:
    for attack in ATTACKS:
        strict = TextThreatModel.for_attack(attack.family, strict=True)
        res = attack(BagOfWords(), TEXTS, LABELS, strict, seed=0)
        assert bool(res.valid.all()), [res.violations[i] for i in range(len(res))]
        assert int(res.chars_changed.max()) <= (strict.max_char_edits or 10**9)
    # Both "good"s must go (2 + 2 - 2 + 0.1): out of reach with 1 invisible edit, reachable with 2.
    one = TextThreatModel(frozenset({"invisible"}), max_char_edits=1)
    text = ["good and good but bad"]
    assert not bool(InvisibleCharacters()(BagOfWords(), text, [1], one).success.any())
    two = TextThreatModel(frozenset({"invisible"}), max_char_edits=2)
    res = InvisibleCharacters()(BagOfWords(), text, [1], two)
    assert res.success.tolist() == [True] and int(res.chars_changed[0]) == 2


def test_edits_are_the_kind_each_attack_makes() -> None:
    inv = InvisibleCharacters()(BagOfWords(), TEXTS, LABELS)
    homo = Homoglyphs()(BagOfWords(), TEXTS, LABELS)
    assert all(c.isascii() for r in (inv, homo) for o in r.originals for c in o)
    for o, a in zip(inv.originals, inv.adversarials, strict=True):
        extra = [c for c in a if not c.isascii()]
        assert all(c in "\u200b\u200c\u200d\u2060" for c in extra)
        assert "".join(c for c in a if c.isascii()) == o  # nothing visible changed
    for o, a in zip(homo.originals, homo.adversarials, strict=True):
        assert len(a) == len(o)
        assert all(x == y or y in lookalikes(x) for x, y in zip(o, a, strict=True))
    bidi = InvisibleCharacters(chars="bidi")(BagOfWords(), TEXTS, LABELS)
    assert bidi.success_rate >= 0.8
    assert all(c in "\u200e\u200f" for a in bidi.adversarials for c in a if not c.isascii())


def test_deepwordbug_known_answer_and_keyboard() -> None:
    assert set(keyboard_neighbours("g")) == set("tyfhvb") and keyboard_neighbours("G").isupper()
    # One keyword decides the label; DeepWordBug must edit exactly that word, with one typo.
    res = DeepWordBug()(BagOfWords(), ["the movie was fun but dull"], [1], seed=0)
    assert res.success.tolist() == [True]
    edited = res.adversarials[0].split()
    assert edited[:3] + edited[4:] == ["the", "movie", "was", "but", "dull"] and edited[3] != "fun"
    assert int(res.chars_changed[0]) == 1 and int(res.words_changed[0]) == 1


def test_word_importance_ranks_keywords_and_skips_stopwords() -> None:
    model = CountingTextClassifier(BagOfWords())
    imp = word_importance(model, "the great film was dull", 1, skip=frozenset({"the", "was"}))
    assert [w.text for w in imp.ranked] == ["great", "film", "dull"]
    assert imp.scores[0] > 0 > imp.scores[-1]
    assert model.queries == 4  # the text itself + one deletion per scored word, in one call
    unk = word_importance(BagOfWords(), "a fine day", 1, method="unk")
    assert unk.ranked[0].text == "fine"
    with pytest.raises(AttackError, match="unknown word-importance"):
        word_importance(BagOfWords(), "x", 1, method="nope")  # type: ignore[arg-type]


def test_query_budget_stops_an_attack() -> None:
    res = InvisibleCharacters(max_queries=3)(BagOfWords(), TEXTS[:1], LABELS[:1])
    assert res.success.tolist() == [False] and res.adversarials == (TEXTS[0],)


def test_sanitiser_defeats_the_character_tricks_and_nfkc_does_not() -> None:
    defended = SanitisedTextClassifier(BagOfWords(), Sanitiser())
    nfkc = SanitisedTextClassifier(BagOfWords(), nfkc_only())
    for attack in (InvisibleCharacters(), InvisibleCharacters(chars="all"), Homoglyphs()):
        assert attack(BagOfWords(), TEXTS, LABELS).success_rate >= 0.8
        res = attack(defended, TEXTS, LABELS)
        assert res.clean_accuracy == 1.0 and res.success_rate == 0.0
        # NFKC alone: zero-width characters and NFKC-stable look-alikes go straight through.
        assert attack(nfkc, TEXTS, LABELS).success_rate >= 0.8
    # Look-alikes NFKC does fold (full-width, mathematical) are what NFKC alone can stop.
    wide = Homoglyphs(nfkc_stable=False, per_char=40, max_candidates=400)
    attacked = wide(BagOfWords(), TEXTS, LABELS)
    assert attacked.success_rate >= 0.8
    assert wide(defended, TEXTS, LABELS).success_rate == 0.0
