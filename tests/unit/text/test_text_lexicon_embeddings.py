"""WordEmbeddings: known answers on hand-made vectors; GloVe 6B 50d from its wheel when installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bastion.errors import DataError
from bastion.text.constraints import WordSimilarity
from bastion.text.lexicon import WordEmbeddings
from conftest import needs_text_resources

needs_glove = needs_text_resources("glove")


def _toy() -> WordEmbeddings:
    # cosines with "a": b = 0.8, c = 0.8 (tie, vocabulary order decides), d = 0, e = -1
    vocab = ["a", "B", "c", "d", "e"]
    vectors = np.array([[2, 0], [0.8, 0.6], [0.8, -0.6], [0, 3], [-1, 0]], dtype=np.float64)
    return WordEmbeddings(vocab, vectors)


def test_similarity_known_answers() -> None:
    emb = _toy()
    assert emb.similarity("a", "b") == pytest.approx(0.8)
    assert emb.similarity("A", "B") == pytest.approx(0.8)  # look-ups are lower-cased
    assert emb.similarity("a", "d") == pytest.approx(0.0, abs=1e-7)
    assert emb.similarity("a", "e") == pytest.approx(-1.0)
    assert emb.similarity("a", "a") == pytest.approx(1.0)
    assert emb.similarity("a", "zz") is None and emb.similarity("zz", "a") is None
    assert "b" in emb and "zz" not in emb and len(emb) == 5 and emb.dim == 2


def test_nearest_order_ties_and_self_exclusion() -> None:
    emb = _toy()
    got = emb.nearest("a", 3)
    assert [w for w, _ in got] == ["b", "c", "d"]  # b and c tie at 0.8: vocabulary order
    assert [s for _, s in got] == pytest.approx([0.8, 0.8, 0.0], abs=1e-7)
    assert [w for w, _ in emb.nearest("a", 99)] == ["b", "c", "d", "e"]  # never the word itself
    assert emb.nearest("zz", 3) == []
    with pytest.raises(DataError, match="k must be"):
        emb.nearest("a", 0)


def test_caller_vectors_untouched_and_protocol() -> None:
    vectors = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    emb = WordEmbeddings(["x", "y"], vectors)
    assert torch.equal(vectors, torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
    v = emb.vector("x")
    assert v is not None and torch.allclose(v, torch.tensor([0.6, 0.8]))
    source: WordSimilarity = emb  # the verifier's min_word_similarity source
    assert source.similarity("x", "y") == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("vocab", "vectors", "match"),
    [
        (["a", "b"], np.ones((3, 2)), "must be"),
        (["a", "A"], np.ones((2, 2)), "duplicate"),
        (["a", "b"], np.array([[1.0, 0.0], [0.0, 0.0]]), "all zeros"),
        (["a", "b"], np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        ([], np.ones((0, 2)), "must be"),
    ],
)
def test_bad_inputs_are_data_errors(vocab: list[str], vectors: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        WordEmbeddings(vocab, vectors)


@needs_glove
def test_glove_offline_known_neighbours() -> None:
    emb = WordEmbeddings.glove_6b_50d(max_words=50_000)
    assert emb.dim == 50 and 40_000 < len(emb) <= 50_000
    assert all(w.isalpha() for w in emb.vocab[:1000])
    assert emb.similarity("movie", "film") > 0.9  # GloVe 6B 50d: 0.931
    assert emb.similarity("movie", "banana") < 0.3
    assert "film" in [w for w, _ in emb.nearest("movie", 5)]
    assert "awful" in [w for w, _ in emb.nearest("terrible", 5)]
    # the caveat the module states: plain GloVe puts antonyms close (counter-fitting would not)
    assert emb.similarity("good", "bad") > 0.7
    with pytest.raises(DataError, match="max_words"):
        WordEmbeddings.glove_6b_50d(max_words=0)
