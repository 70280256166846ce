"""Sentence encoders (edit windows, SIF-GloVe known answers, the packaged USE) and offline_resources.
Tests that need GloVe, WordNet or the USE wheel skip cleanly when they are absent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bastion.errors import DataError
from bastion.text import TextThreatModel
from bastion.text.constraints import SentenceEncoder
from bastion.text.encoders import GloveSentenceEncoder, UniversalSentenceEncoder, edit_windows
from bastion.text.lexicon import WordEmbeddings
from conftest import needs_text_resources

needs_use = needs_text_resources("use")
needs_all = needs_text_resources("glove", "wordnet", "use")
LONG = " ".join(f"w{i}" for i in range(30))


def _toy() -> WordEmbeddings:
    # Vocabulary in frequency order, as GloVe's: "the" first.
    rad = np.radians([200, 0, 10, 90])
    return WordEmbeddings(["the", "great", "good", "plot"], np.stack([np.cos(rad), np.sin(rad)], axis=1))


def test_edit_windows_cover_every_change_and_nothing_far() -> None:
    assert edit_windows("a b c", "a x c", 15) == ("a b c", "a x c")  # shorter than the window: whole
    assert edit_windows(LONG, LONG, 5) == (LONG, LONG)
    a, b = edit_windows(LONG, LONG.replace("w10", "zz"), 5)
    assert a == "w8 w9 w10 w11 w12" and b == "w8 w9 zz w11 w12"
    changed = LONG.replace("w1 ", "zz ").replace("w28", "yy")
    a, b = edit_windows(LONG, changed, 5)  # two far edits: the span holds both
    assert a.startswith("w0 w1 ") and a.endswith("w28 w29") and "zz" in b and "yy" in b
    assert edit_windows(LONG, LONG.replace("w0", "zz"), 3)[0] == "w0 w1"


def test_glove_encoder_known_answers() -> None:
    enc: SentenceEncoder = GloveSentenceEncoder(_toy(), window=None)  # the protocol (mypy checks)
    # One-word texts: the SIF weight scales the vector, the cosine is the angle's.
    assert enc.similarities(["great"], ["good"])[0] == pytest.approx(math.cos(math.radians(10)), abs=1e-6)
    assert enc.similarities(["great", "the plot"], ["great", "the plot"]) == [1.0, 1.0]
    ang = GloveSentenceEncoder(_toy(), window=None, metric="angular")
    assert ang.similarities(["great"], ["plot"])[0] == pytest.approx(0.5, abs=1e-6)  # 90 degrees
    # SIF down-weights frequent words: "the" (rank 1) weighs least, "plot" (rank 4) most.
    w = GloveSentenceEncoder(_toy())._weight
    assert w["the"] < w["great"] < w["good"] < w["plot"] <= 1.0
    # Unknown words are ignored; a text with none embeds as zero (cosine 0 unless identical).
    assert enc.similarities(["zzz"], ["great"]) == [0.0]
    with pytest.raises(DataError, match="aligned"):
        enc.similarities(["a"], [])
    with pytest.raises(DataError):
        GloveSentenceEncoder(_toy(), window=0)


@needs_use
def test_use_separates_paraphrase_from_unrelated() -> None:
    enc = UniversalSentenceEncoder(window=None)
    a = ["the film is a great joy to watch", "the film is a great joy to watch"]
    b = ["the movie is a great joy to watch", "interest rates rose sharply in march"]
    near, far = enc.similarities(a, b)
    assert near > 0.9 > 0.5 > far
    assert enc.similarities(a[:1], a[:1]) == [1.0]
    angular = UniversalSentenceEncoder(window=None, metric="angular").similarities(a, b)
    assert angular[0] == pytest.approx(1 - math.acos(near) / math.pi, abs=1e-5)


@needs_all
def test_offline_resources_load_exactly_what_the_threat_needs() -> None:
    from bastion.text.resources import offline_resources

    none = offline_resources(TextThreatModel.for_attack("pwws"))
    assert none.embeddings is none.encoder is none.pos is None
    strict = offline_resources(TextThreatModel.for_attack("pwws", strict=True))
    assert strict.pos is not None and strict.embeddings is None and strict.encoder is None
    paper = TextThreatModel.for_attack("textfooler")
    full = offline_resources(paper)
    assert isinstance(full.encoder, UniversalSentenceEncoder) and full.embeddings is not None
    assert full.pos is not None and full.pos.parts_of_speech("film") >= {"n"}
    again = offline_resources(paper, encoder="glove")
    assert isinstance(again.encoder, GloveSentenceEncoder)
    assert again.embeddings is full.embeddings  # loaded once per process
    assert offline_resources(None, embeddings=True).embeddings is full.embeddings
    with pytest.raises(DataError, match="unknown sentence encoder"):
        offline_resources(paper, encoder="bert")  # type: ignore[arg-type]
