"""TextFooler and PWWS with the real offline resources (GloVe 6B 50d, WordNet, the packaged USE): a toy
model's flip with real synonyms, and 20 SST-2 validation sentences against a TF-IDF + logistic regression
fitted here. Skips cleanly when a resource or ../shared/data is absent."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from bastion.text import TextThreatModel, violations
from bastion.text.attacks import PWWS, TextAttack, TextFooler
from bastion.text.model import CountingTextClassifier, SklearnTextClassifier
from bastion.text.resources import offline_resources, wordnet
from conftest import needs_text_resources

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
needs_resources = needs_text_resources("glove", "wordnet", "use")
needs_text = pytest.mark.skipif(not (SHARED / "text").is_dir(), reason="text sets not in ../shared/data")


class OneWord:
    """Positive iff the text contains "good" (logit 2 for it, -1 for "dull"): any swap of "good" flips."""

    num_classes = 2

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        s = torch.tensor([2.0 * ("good" in re.findall(r"\w+", t.lower())) - 1.0 * ("dull" in t) + 0.1
                          for t in texts])  # fmt: skip
        return torch.stack([-s, s], dim=1)


def make(family: str, threat: TextThreatModel) -> TextAttack:
    if family == "textfooler":
        return TextFooler(resources=offline_resources(threat, embeddings=True))
    return PWWS(resources=offline_resources(threat))


@needs_resources
@pytest.mark.parametrize("family", ["textfooler", "pwws"])
def test_real_synonyms_flip_a_one_word_model(family: str) -> None:
    text = "a good film with a dull start"
    threat = TextThreatModel.for_attack(family)
    res = make(family, threat)(OneWord(), [text], [1], threat)
    assert res.success.tolist() == [True], res.show(0)
    words = res.adversarials[0].split()
    new = words.pop(1)
    assert words == ["a", "film", "with", "a", "dull", "start"]  # only "good" was swapped
    if family == "pwws":
        assert new in wordnet().synonyms("good")
    else:
        emb = offline_resources(None, embeddings=True).embeddings
        assert emb is not None and (emb.similarity("good", new) or 0.0) >= 0.5


@needs_resources
@needs_text
@pytest.mark.slow
def test_sst2_end_to_end_paper_and_strict() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from bastion.text.data import load_text_dataset

    train = load_text_dataset("sst2", "train", root=SHARED)
    val = load_text_dataset("sst2", "validation", root=SHARED)
    pipe = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(C=4.0, max_iter=1000))
    pipe.fit(list(train.texts[:10000]), train.labels[:10000].numpy())
    texts, labels = list(val.texts[:20]), val.labels[:20]
    for family in ("textfooler", "pwws"):
        rates = []
        for strict in (False, True):
            threat = TextThreatModel.for_attack(family, strict=strict)
            attack = make(family, threat)
            model = CountingTextClassifier(SklearnTextClassifier(pipe))
            res = attack(model, texts, labels, threat)
            assert res.clean_accuracy >= 0.6
            assert model.queries == int(res.queries.sum()) + len(texts)
            assert bool(res.valid.all()), res.violations
            for i in range(len(res)):
                if bool(res.success[i]):
                    assert violations(texts[i], res.adversarials[i], threat, attack.resources) == []
                    assert " -> " in res.show(i)
            rates.append(res.success_rate)
        assert rates[0] >= 0.5, (family, rates)  # a linear TF-IDF model falls to word swaps
        assert rates[1] <= rates[0], (family, rates)
