"""WordNetLexicon over Debian's WordNet 3.0 (skips when wordnet-base or nltk is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import DataError
from bastion.text.constraints import PartOfSpeech
from bastion.text.lexicon import POS_TAGS, Lexicon, WordNetLexicon
from conftest import needs_text_resources

needs_wordnet = needs_text_resources("wordnet")


@pytest.fixture(scope="module")
def lexicon() -> WordNetLexicon:
    return WordNetLexicon()


@needs_wordnet
@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("good", {"beneficial", "estimable", "respectable", "honorable", "skillful"}),
        ("movie", {"film", "picture", "flick", "pic"}),
        ("terrible", {"awful", "dreadful", "horrific", "atrocious", "abominable"}),
    ],
)
def test_synonyms_contain_known_words(lexicon: WordNetLexicon, word: str, expected: set[str]) -> None:
    syn = lexicon.synonyms(word)
    assert expected <= set(syn)
    assert word not in syn
    assert len(syn) == len(set(syn))
    assert all(s.isascii() and s.isalpha() and s == s.lower() for s in syn)  # single tokens only


@needs_wordnet
def test_synonyms_deterministic_and_case_insensitive(lexicon: WordNetLexicon) -> None:
    first = lexicon.synonyms("terrible")
    assert lexicon.synonyms("terrible") == first
    assert lexicon.synonyms("Terrible") == first
    assert WordNetLexicon().synonyms("terrible") == first  # a second instance, same order
    # most frequent sense first: the adjective "awful" sense before "severe"
    assert first.index("awful") < first.index("severe")
    first.clear()  # the caller owns the list it got; the cache is untouched
    assert lexicon.synonyms("terrible")


@needs_wordnet
def test_synonyms_by_part_of_speech(lexicon: WordNetLexicon) -> None:
    nouns, adjectives = set(lexicon.synonyms("good", "n")), set(lexicon.synonyms("good", "a"))
    assert "goodness" in nouns and "goodness" not in adjectives
    assert "beneficial" in adjectives and "beneficial" not in nouns
    assert set(lexicon.synonyms("good")) == nouns | adjectives | set(lexicon.synonyms("good", "r"))
    assert lexicon.synonyms("movie", "v") == []
    with pytest.raises(DataError, match="unknown part of speech"):
        lexicon.synonyms("good", "NOUN")


@needs_wordnet
def test_inflected_word_excludes_its_base_form(lexicon: WordNetLexicon) -> None:
    syn = lexicon.synonyms("movies")
    assert "film" in syn and "movie" not in syn and "movies" not in syn


@needs_wordnet
def test_parts_of_speech(lexicon: WordNetLexicon) -> None:
    assert lexicon.parts_of_speech("run") == {"n", "v"}
    assert lexicon.parts_of_speech("terrible") == {"a"}
    assert lexicon.parts_of_speech("quickly") == {"r"}
    assert lexicon.parts_of_speech("the") == frozenset()  # function words are not in WordNet
    assert lexicon.parts_of_speech("zzqx") == frozenset()
    assert lexicon.synonyms("zzqx") == []
    assert set(POS_TAGS) == {"n", "v", "a", "r"}


@needs_wordnet
def test_is_a_lexicon(lexicon: WordNetLexicon) -> None:
    source: Lexicon = lexicon  # structural: mypy checks these assignments
    pos: PartOfSpeech = lexicon  # the verifier's same_pos source
    assert source.synonyms("film") and pos.parts_of_speech("film") == {"n", "v"}


def test_absent_wordnet_is_a_one_line_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"apt-get install -y --no-install-recommends wordnet-base") as e:
        WordNetLexicon(tmp_path / "no-wordnet")
    assert "\n" not in str(e.value)


def test_bad_cache_size() -> None:
    with pytest.raises(DataError, match="cache_size"):
        WordNetLexicon(cache_size=-1)
