"""A word-level tokenizer with a frequency vocabulary, stored as JSON (never pickle).

Words are found with :func:`bastion.text.words.split_words` (the regex the attacks and the verifier use)
and lower-cased. A word outside the vocabulary becomes ``<unk>``: a zero-width character or a look-alike
letter inside a word makes it unknown, as it would for a deployed word-level model.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from bastion.errors import DataError
from bastion.text.words import split_words

__all__ = ["PAD", "UNK", "WordTokenizer"]

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1
_FORMAT = "bastion-word-tokenizer"


class WordTokenizer:
    """``tokenizer(texts) -> LongTensor (N, L)``: word ids, right-padded with 0 (``<pad>``).

    ``L`` is the longest text's word count, at most ``max_len`` (longer texts are truncated at the end)
    and at least 1 (an empty text is one ``<pad>``). ``vocab[i]`` is the word with id ``i``; ids 0 and 1
    are ``<pad>`` and ``<unk>``.
    """

    def __init__(self, vocab: Sequence[str], *, max_len: int = 128, lowercase: bool = True) -> None:
        words = list(vocab)
        if words[:2] != [PAD, UNK]:
            raise DataError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {words[:2]}")
        if len(set(words)) != len(words):
            dup = next(w for w, n in Counter(words).items() if n > 1)
            raise DataError(f"the vocabulary lists {dup!r} more than once")
        if max_len < 1:
            raise DataError(f"max_len must be >= 1, got {max_len}")
        self.vocab: tuple[str, ...] = tuple(words)
        self.max_len = int(max_len)
        self.lowercase = bool(lowercase)
        self._ids = {w: i for i, w in enumerate(words)}

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        *,
        min_count: int = 1,
        max_size: int | None = 20_000,
        max_len: int = 128,
        lowercase: bool = True,
    ) -> WordTokenizer:
        """A vocabulary of the words seen at least ``min_count`` times, most frequent first (ties by
        word, so the result does not depend on text order), with at most ``max_size`` entries in all."""
        if min_count < 1 or (max_size is not None and max_size < 3):
            raise DataError(f"need min_count >= 1 and max_size >= 3, got {min_count}, {max_size}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(_words(text, lowercase))
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls([PAD, UNK, *ranked], max_len=max_len, lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        """The (lower-cased) words of ``text`` the ids stand for, before truncation."""
        return _words(text, self.lowercase)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``'s words, truncated to ``max_len``; no padding."""
        return [self._ids.get(w, 1) for w in self.words(text)[: self.max_len]]

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [self.encode(t) for t in texts]
        length = max([1, *(len(r) for r in rows)])
        return torch.tensor([r + [0] * (length - len(r)) for r in rows], dtype=torch.long).view(-1, length)

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "version": 1, "lowercase": self.lowercase, "max_len": self.max_len,
                "vocab": list(self.vocab)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "tokenizer") -> WordTokenizer:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise DataError(f"{source}: not a bastion word-tokenizer file (format {_FORMAT!r})")
        vocab = data.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
            raise DataError(f"{source}: 'vocab' must be a list of strings")
        return cls(vocab, max_len=int(data.get("max_len", 128)), lowercase=bool(data.get("lowercase", True)))

    def save(self, path: str | Path) -> Path:
        """Writes the vocabulary as UTF-8 JSON (deterministic bytes) and returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p} does not exist; expected a tokenizer JSON written by WordTokenizer.save")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{p}: not a UTF-8 JSON tokenizer file ({exc})") from None
        return cls.from_dict(data, source=str(p))


def _words(text: str, lowercase: bool) -> list[str]:
    return [w.text.lower() if lowercase else w.text for w in split_words(text)]
