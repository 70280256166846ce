"""End to end on real data: character tricks against a TF-IDF + logistic-regression SST-2 model, with
and without the sanitiser (skips when ../shared/data/text is absent)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
import torch

from bastion.text import SklearnTextClassifier, TextThreatModel
from bastion.text.attacks import Homoglyphs, InvisibleCharacters, TextAttack
from bastion.text.sanitise import SanitisedTextClassifier, Sanitiser, nfkc_only
from bastion.text.words import split_words

TEXT = Path(__file__).resolve().parents[4] / "shared" / "data" / "text"
needs_text = pytest.mark.skipif(
    not (TEXT / "sst2_train.csv.gz").is_file(), reason="SST-2 not in ../shared/data"
)


def _load(name: str, limit: int | None = None) -> tuple[list[str], list[int]]:
    with gzip.open(TEXT / f"{name}.csv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:limit]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


def _words(text: str) -> list[str]:
    return [w.text.lower() for w in split_words(text)]


@pytest.mark.slow
@needs_text
def test_sanitiser_stops_character_tricks_on_sst2_without_moving_clean_accuracy() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, y_train = _load("sst2_train", 20000)
    test, y_test = _load("sst2_validation")
    pipe = make_pipeline(
        TfidfVectorizer(tokenizer=_words, lowercase=False, token_pattern=None, ngram_range=(1, 2)),
        LogisticRegression(C=10, max_iter=2000),
    ).fit(train, y_train)
    model = SklearnTextClassifier(pipe)
    defended = SanitisedTextClassifier(model, Sanitiser())
    y = torch.tensor(y_test)
    clean = model(test).argmax(1)
    assert float((clean == y).float().mean()) > 0.75
    assert torch.equal(defended(test).argmax(1), clean)  # clean accuracy does not move: not one label
    attacks: list[TextAttack] = [InvisibleCharacters(chars="all"), Homoglyphs()]
    for attack in attacks:
        plain = attack(model, test[:40], y_test[:40], seed=0)
        assert plain.success_rate > 0.25  # the tricks work on the undefended model ...
        assert attack(SanitisedTextClassifier(model, nfkc_only()), test[:40], y_test[:40]).success_rate > 0.25
        strict = TextThreatModel.for_attack(attack.family, strict=True)
        for threat in (None, strict):
            res = attack(defended, test[:40], y_test[:40], threat, seed=0)  # ... and fall to 0 behind it
            assert res.success_rate == 0.0, [res.show(i) for i in range(len(res)) if bool(res.success[i])]
