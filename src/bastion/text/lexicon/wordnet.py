"""Synonyms and parts of speech from WordNet 3.0, read offline through NLTK.

The data are Debian's ``wordnet-base`` files (``apt-get install -y --no-install-recommends wordnet-base``
puts them in ``/usr/share/wordnet``); the reader is NLTK's ``WordNetCorpusReader`` (``pip install nltk``).
NLTK cannot read that directory as it stands, for three reasons this module works around:

- NLTK (>= 3.9) refuses to open files outside its data roots: the WordNet directory is added to
  ``nltk.data.path``, which is NLTK's documented way to authorise a directory (read-only data);
- Debian does not ship ``lexnames`` (the 45 lexicographer file names, a fixed table in ``lexnames(5WN)``):
  it is typed in below and served by :meth:`_DebianWordNetReader.open`;
- NLTK maps every WordNet onto 3.0 through ``index.sense`` of its own downloaded copy, which is neither
  here nor needed (this *is* 3.0): :meth:`_DebianWordNetReader.map_wn` says no mapping.

Loading reads every index (a few seconds); it happens once per directory and process (cached).
Miller (1995), "WordNet: a lexical database for English", CACM 38(11).
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

from bastion.errors import DataError

__all__ = ["DEFAULT_WORDNET_DIR", "POS_TAGS", "WordNetLexicon"]

logger = logging.getLogger(__name__)

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
#: WordNet's parts of speech: noun, verb, adjective (satellites included), adverb.
POS_TAGS: tuple[str, ...] = ("n", "v", "a", "r")
_FIX = "apt-get install -y --no-install-recommends wordnet-base && pip install nltk"

# lexnames(5WN): file number = position; the category (1 noun, 2 verb, 3 adj, 4 adv) is the name's prefix.
_LEXNAMES = (  # noqa: SIM905 (a word list reads better as text)
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_REQUIRED = ("index.noun", "index.verb", "index.adj", "index.adv", "data.noun", "data.verb", "data.adj",
             "data.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")  # fmt: skip
_LOCK = threading.Lock()


@functools.cache
def _reader(root: str) -> Any:
    """NLTK's reader over ``root``, built once per process (it loads every index eagerly)."""
    missing = [f for f in _REQUIRED if not (Path(root) / f).is_file()]
    if missing:
        raise DataError(f"WordNet not found in {root} (missing {missing[0]}); install it: {_FIX}")
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as e:
        raise DataError(f"WordNet needs NLTK to read {root}: pip install nltk") from e

    class _DebianWordNetReader(WordNetCorpusReader):
        def open(self, file: str) -> Any:
            if file == "lexnames":
                text = "".join(
                    f"{i:02d}\t{n}\t{_CATEGORY[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES)
                )
                return io.StringIO(text)
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with _LOCK:
        if root not in nltk.data.path:
            nltk.data.path.append(root)
        with warnings.catch_warnings():  # "multilingual functions are not available": expected, no OMW
            warnings.simplefilter("ignore")
            reader = _DebianWordNetReader(root, None)
    logger.debug("loaded WordNet %s from %s", reader.get_version(), root)
    return reader


class WordNetLexicon:
    """Synonyms (WordNet lemmas sharing a synset) and possible parts of speech of English words.

    ``synonyms(word, pos)``: lower-cased single alphabetic tokens (multi-word and hyphenated lemmas are
    dropped: a word-level attack replaces one token by one token), without the word itself or its own
    base form, deduplicated, in WordNet's order: senses by frequency, lemmas within a sense as listed.
    The same word gives the same list on every call and machine with the same WordNet.

    ``parts_of_speech(word)``: the parts of speech WordNet knows for ``word`` (after its morphology),
    from ``POS_TAGS``; context-free (not a tagger): "run" is {"n", "v"} wherever it stands. Empty for
    words WordNet lacks (function words).

    Results are memoised per instance (up to ``cache_size`` words); the reader is shared per directory.
    """

    def __init__(self, root: str | Path = DEFAULT_WORDNET_DIR, cache_size: int = 65536) -> None:
        if cache_size < 0:
            raise DataError(f"cache_size must be >= 0, got {cache_size}")
        self.root = Path(root)
        self.cache_size = cache_size
        self._wn = _reader(str(self.root))
        self._syn: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._pos: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return f"WordNetLexicon(root={str(self.root)!r})"

    def synonyms(self, word: str, pos: str | None = None) -> list[str]:
        """Synonyms of ``word`` (optionally of one part of speech in ``POS_TAGS``); [] when none."""
        key = (word, pos)
        if key not in self._syn:
            found = self._synonyms(word, pos)
            if len(self._syn) >= self.cache_size:
                self._syn.clear()  # bounded memory; a refill costs only look-ups
            self._syn[key] = found
        return list(self._syn[key])  # a fresh list: the caller may edit it

    def parts_of_speech(self, word: str) -> frozenset[str]:
        """The parts of speech (subset of ``POS_TAGS``) WordNet knows for ``word``."""
        if word not in self._pos:
            if len(self._pos) >= self.cache_size:
                self._pos.clear()
            self._pos[word] = self._parts_of_speech(word)
        return self._pos[word]

    def _synonyms(self, word: str, pos: str | None) -> tuple[str, ...]:
        if pos is not None and pos not in POS_TAGS:
            raise DataError(f"unknown part of speech {pos!r}; use one of {POS_TAGS} or None")
        w = word.strip().lower()
        if not w:
            return ()
        synsets = self._wn.synsets(w, pos=pos)
        exclude = {w} | {self._wn.morphy(w, p) for p in POS_TAGS} - {None}
        out: dict[str, None] = {}
        for synset in synsets:
            for name in synset.lemma_names():
                name = name.lower()
                if name.isascii() and name.isalpha() and name not in exclude:
                    out.setdefault(name, None)
        return tuple(out)

    def _parts_of_speech(self, word: str) -> frozenset[str]:
        w = word.strip().lower()
        if not w:
            return frozenset()
        return frozenset(p for p in POS_TAGS if self._wn.synsets(w, pos=p))
