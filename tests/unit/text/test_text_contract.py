"""The text contract: model adapters, the threat model, the verifier and the attack base class."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from bastion.errors import DataError, ModelContractError, ThreatModelError
from bastion.text import Resources, SklearnTextClassifier, TextThreatModel, violations
from bastion.text.attacks import BudgetedTextClassifier, TextAttack, show_edit
from bastion.text.words import changed_words, char_edit_distance, split_words, transformations


class KeywordModel:
    """Positive iff 'good' appears more often than 'bad' (logits are the two counts)."""

    num_classes = 2

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor(
            [[t.split().count("bad"), t.split().count("good")] for t in texts], dtype=torch.float32
        )


class SwapGood(TextAttack):
    """Replaces every 'good' with ``self.new``: a deliberately simple attack to test the base class."""

    name = "swap-good"
    family = "pwws"
    uses = frozenset({"synonym"})

    def __init__(self, new: str = "fine", **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.new = new

    def _attack_one(
        self,
        model: BudgetedTextClassifier,
        text: str,
        label: int,
        threat: TextThreatModel,
        generator: torch.Generator,
    ) -> str:
        model([text, text])  # two counted queries
        return " ".join(self.new if w == "good" else w for w in text.split())


def test_words_and_edit_distance() -> None:
    assert [w.text for w in split_words("it's a well-made film, isn't it?")] == [
        "it's", "a", "well-made", "film", "isn't", "it",
    ]  # fmt: skip
    assert changed_words("the film is good", "the film is fine") == [3]
    assert changed_words("a b c", "a x b c") == []  # an insertion changes no original word
    assert char_edit_distance("kitten", "sitting") == 3
    assert char_edit_distance("kitten", "sitting", cap=1) == 2  # capped: "more than 1"


def test_threat_presets_validate_and_describe() -> None:
    tf = TextThreatModel.for_attack("textfooler")
    strict = TextThreatModel.for_attack("textfooler", strict=True)
    assert tf.min_word_similarity == 0.5 and strict.min_word_similarity == 0.9
    assert "textfooler/strict" in strict.describe()
    with pytest.raises(ThreatModelError, match="unknown text edit"):
        TextThreatModel(frozenset({"teleport"}))
    with pytest.raises(ThreatModelError, match=r"\(0, 1\]"):
        TextThreatModel(frozenset({"synonym"}), max_words_changed=1.5)
    with pytest.raises(ThreatModelError, match="use one of"):
        TextThreatModel.for_attack("nope")


def test_verifier_catches_each_broken_constraint() -> None:
    words = TextThreatModel(frozenset({"synonym"}), max_words_changed=0.25)
    assert violations("the film is good", "the film is fine", words) == []
    assert any("words changed" in v for v in violations("the film is good", "a movie is fine", words))
    assert any("stop word" in v for v in violations("the film is good", "this film is good", words))
    assert any("split" in v for v in violations("the film is good", "the film is go od", words))
    chars = TextThreatModel(frozenset({"swap"}), max_char_edits=1, max_edits_per_word=1)
    assert violations("a good film", "a godo film", chars)  # a swap is two Levenshtein edits...
    two = TextThreatModel(frozenset({"swap"}), max_char_edits=2, max_edits_per_word=1)
    assert violations("a good film", "a godo film", two) == []  # ...and one typo in its word
    assert any("in one word" in v for v in violations("a good film", "a dgoo film", two))
    assert transformations("good", "godo") == 1 and transformations("good", "dgoo") == 2
    invisible = TextThreatModel(frozenset({"invisible"}))
    assert violations("a good film", "a go\u200bod film", invisible) == []
    assert any("visible" in v for v in violations("a good film", "a goo film", invisible))
    assert violations("a good film", "a go\ufe0fod film", invisible) == []  # a variation selector is unseen


def test_missing_resource_is_refused_up_front() -> None:
    with pytest.raises(ThreatModelError, match="word embeddings"):
        Resources().require(TextThreatModel.for_attack("textfooler"))


def test_base_class_counts_verifies_and_skips() -> None:
    texts = ["good film", "bad film", "good good bad"]
    res = SwapGood()(KeywordModel(), texts, [1, 1, 1], TextThreatModel(frozenset({"synonym"})))
    # texts 0 and 2 flip with a valid edit; text 1 is already misclassified, so it is not attacked.
    assert res.success.tolist() == [True, False, True]
    assert res.queries.tolist() == [3, 1, 3]  # the clean query + two attack queries per attacked text
    assert res.adversarials[1] == "bad film" and res.robust_accuracy == 0.0
    assert res.success_rate == 1.0
    assert "[good -> fine]" in res.show(0)
    # A threat that caps changed words at 10% makes the same edits invalid: no success is counted.
    tight = TextThreatModel(frozenset({"synonym"}), max_words_changed=0.1)
    res = SwapGood()(KeywordModel(), texts, [1, 0, 1], tight)
    assert not bool(res.success.any()) and not bool(res.valid[0])
    # A budget below what the attack needs stops it: the original comes back, no success.
    res = SwapGood(max_queries=1)(KeywordModel(), ["good film"], [1], TextThreatModel(frozenset({"synonym"})))
    assert res.adversarials == ("good film",) and res.success.tolist() == [False]
    assert SwapGood(max_queries=2)(KeywordModel(), ["good film"], [1]).success.tolist() == [True]


def test_base_class_refuses_a_threat_it_cannot_serve_and_bad_inputs() -> None:
    with pytest.raises(ThreatModelError, match="makes synonym edits"):
        SwapGood()(KeywordModel(), ["good"], [1], TextThreatModel(frozenset({"invisible"})))
    with pytest.raises(DataError, match="not one string"):
        SwapGood()(KeywordModel(), "good film", [1])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="labels"):
        SwapGood()(KeywordModel(), ["good film"], [1, 0])


def test_show_edit_makes_invisible_characters_visible() -> None:
    assert show_edit("a good film", "a go\u200bod film") == "a [good -> go<U+200B>od] film"


def test_sklearn_adapter_gives_log_probabilities() -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(CountVectorizer(), LogisticRegression()).fit(
        ["good film", "great film", "bad film", "awful film"], [1, 1, 0, 0]
    )
    model = SklearnTextClassifier(pipe)
    logits = model(["good", "awful"])
    assert model.num_classes == 2 and logits.shape == (2, 2)
    assert torch.allclose(
        logits.softmax(1), torch.as_tensor(pipe.predict_proba(["good", "awful"]), dtype=torch.float32)
    )
    with pytest.raises(ModelContractError, match="predict_proba"):
        SklearnTextClassifier(object())
