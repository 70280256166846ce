"""The word tokenizer: frequency vocabulary, unknown words, padding/truncation, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bastion.errors import DataError
from bastion.text.tokenizer import PAD, UNK, WordTokenizer

TEXTS = ["The film is good.", "a GOOD, good film", "bad film", "it's well-made"]


def test_vocabulary_by_frequency_then_word() -> None:
    tok = WordTokenizer.fit(TEXTS)
    assert tok.vocab[:4] == (PAD, UNK, "film", "good")  # 3 each: ties broken by the word
    assert tok.vocab[4:] == ("a", "bad", "is", "it's", "the", "well-made")
    assert WordTokenizer.fit(reversed(TEXTS)).vocab == tok.vocab  # order of texts does not matter
    assert WordTokenizer.fit(TEXTS, min_count=2).vocab == (PAD, UNK, "film", "good")
    assert len(WordTokenizer.fit(TEXTS, max_size=3)) == 3


def test_ids_padding_truncation_and_unknowns() -> None:
    tok = WordTokenizer.fit(TEXTS, max_len=3)
    ids = tok(["good film", "The film is good", "", "zebra"])
    film, good, the, is_ = (tok.vocab.index(w) for w in ("film", "good", "the", "is"))
    assert ids.dtype == torch.long and ids.shape == (4, 3)
    assert ids.tolist() == [[good, film, 0], [the, film, is_], [0, 0, 0], [1, 0, 0]]
    assert tok([""]).shape == (1, 1)


def test_attack_characters_make_a_word_unknown() -> None:
    tok = WordTokenizer.fit(TEXTS)
    good = tok.vocab.index("good")
    assert tok(["good"]).tolist() == [[good]]
    assert tok(["go\u200bod"]).tolist() == [[1]]  # zero-width space: still one word, now unknown
    assert tok(["g\u043eod"]).tolist() == [[1]]  # Cyrillic o: a homoglyph
    assert tok(["GOOD"]).tolist() == [[good]]  # case is not an attack on a lower-casing model


def test_json_round_trip_gives_identical_ids(tmp_path: Path) -> None:
    tok = WordTokenizer.fit([*TEXTS, "naïve café £5"], max_len=7)
    path = tok.save(tmp_path / "vocab.json")
    again = WordTokenizer.load(path)
    probe = [*TEXTS, "naïve café", "unseen words here and there and more"]
    assert again.vocab == tok.vocab and again.max_len == 7
    assert torch.equal(again(probe), tok(probe))
    assert path.read_bytes() == tok.save(tmp_path / "second.json").read_bytes()  # deterministic bytes
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == "bastion-word-tokenizer"


def test_bad_vocabularies_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="starts with"):
        WordTokenizer(["a", "b"])
    with pytest.raises(DataError, match="more than once"):
        WordTokenizer([PAD, UNK, "a", "a"])
    (tmp_path / "x.json").write_text('{"vocab": []}', encoding="utf-8")
    with pytest.raises(DataError, match="not a bastion word-tokenizer file"):
        WordTokenizer.load(tmp_path / "x.json")
    with pytest.raises(DataError, match="does not exist"):
        WordTokenizer.load(tmp_path / "missing.json")
