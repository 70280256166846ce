"""The text zoo: word-level CNNs trained by ``scripts/train_text_zoo.py``, and a TF-IDF baseline.

>>> from bastion.text.zoo import load_text_model, text_card
>>> model = load_text_model("sst2-wordcnn")        # a TorchTextClassifier: list[str] -> logits (N, 2)
>>> text_card("sst2-wordcnn")["clean_accuracy"]    # on the SST-2 validation split, from the script

Each model ships as three files in ``bastion/zoo/weights``: ``text-<name>.safetensors`` (weights stored
as float16, computed in float32), ``text-<name>.vocab.json`` (the :class:`WordTokenizer`) and
``text-<name>.json`` (the card: dataset, split, seed, recipe, clean accuracy, sha256 of the data file,
of the weights and of the vocabulary). :func:`load_text_model` refuses files whose sha256 differs from
the card's, as the image zoo does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from typing import Any

import torch

from bastion.errors import ModelContractError, UnsafeArtifactError
from bastion.text.data import TextData
from bastion.text.model import SklearnTextClassifier, TorchTextClassifier
from bastion.text.nets import build_text_net
from bastion.text.tokenizer import WordTokenizer
from bastion.text.words import split_words

__all__ = ["TEXT_ZOO", "TextZooSpec", "load_text_model", "text_card", "text_zoo_file", "tfidf_baseline"]


@dataclass(frozen=True)
class TextZooSpec:
    """How a text zoo model is built and trained (read by the training script and by the loader)."""

    dataset: str  # a name in bastion.text.data.TEXT_DATASETS
    train_split: str
    eval_split: str  # the split the card's clean_accuracy is measured on
    extra_splits: tuple[str, ...] = ()  # also measured and recorded in the card
    arch: str = "wordcnn"
    net: dict[str, Any] = field(
        default_factory=lambda: {"embed_dim": 64, "widths": (3, 4, 5), "filters": 100}
    )
    max_vocab: int = 20_000
    min_count: int = 1
    max_len: int = 128
    epochs: int = 5
    batch_size: int = 50
    lr: float = 1e-3


TEXT_ZOO: dict[str, TextZooSpec] = {
    # Attack papers (TextFooler, PWWS, TextAttack) report SST-2 numbers on the GLUE validation split.
    # 128-dim embeddings over the 10k most frequent words (of 14.7k): 2.9 MB in float16. 64 dims over all
    # words reached only 77% on validation; 128 dims over 10k words, 80% after two epochs.
    "sst2-wordcnn": TextZooSpec(
        "sst2",
        "train",
        "validation",
        extra_splits=("test",),
        max_len=64,
        epochs=4,
        max_vocab=10_000,
        net={"embed_dim": 128, "widths": (3, 4, 5), "filters": 100},
    ),
    "sms-spam-wordcnn": TextZooSpec("sms-spam", "train", "test", max_len=128, epochs=8),
}


def _spec(name: str) -> TextZooSpec:
    if name not in TEXT_ZOO:
        raise ModelContractError(f"unknown text zoo model {name!r}; choose one of: {', '.join(TEXT_ZOO)}")
    return TEXT_ZOO[name]


def text_zoo_file(name: str, suffix: str) -> Traversable:
    """``bastion/zoo/weights/text-<name><suffix>`` (need not exist)."""
    _spec(name)
    return files("bastion.zoo") / "weights" / f"text-{name}{suffix}"


def _existing(name: str, suffix: str) -> Traversable:
    path = text_zoo_file(name, suffix)
    if not path.is_file():
        raise ModelContractError(
            f"text zoo model {name!r} has no {suffix} file in the package; retrain it with "
            f"`python scripts/train_text_zoo.py --model {name}`"
        )
    return path


def text_card(name: str) -> dict[str, Any]:
    """The card of ``name`` (a fresh dict each call)."""
    card: dict[str, Any] = json.loads(_existing(name, ".json").read_text(encoding="utf-8"))
    needed = ("name", "arch", "net", "vocab_size", "num_classes", "sha256", "vocab_sha256", "clean_accuracy")
    missing = [k for k in needed if k not in card] if isinstance(card, dict) else list(needed)
    if missing or card.get("name") != name:
        raise ModelContractError(f"card of text zoo model {name!r} is malformed (missing {missing})")
    return card


def load_text_model(name: str, *, batch_size: int = 256) -> TorchTextClassifier:
    """The trained text zoo model ``name`` (:data:`TEXT_ZOO`): raw strings in, logits (N, K) out.

    Raises :class:`ModelContractError` for an unknown name and :class:`UnsafeArtifactError` when the
    weights or the vocabulary differ (sha256) from the card.
    """
    from bastion.loading import read_state_dict, sha256_file

    card = text_card(name)
    with as_file(_existing(name, ".safetensors")) as wpath, as_file(_existing(name, ".vocab.json")) as vpath:
        for what, path, key in (("weights", wpath, "sha256"), ("vocabulary", vpath, "vocab_sha256")):
            digest = sha256_file(path)
            if digest != card[key]:
                raise UnsafeArtifactError(
                    f"{what} of text zoo model {name!r} do not match its card (sha256 {digest[:12]}… != "
                    f"{str(card[key])[:12]}…); reinstall bastion or rerun scripts/train_text_zoo.py"
                )
        state = {k: v.float() for k, v in read_state_dict(wpath).items()}
        tokenizer = WordTokenizer.load(vpath)
    if len(tokenizer) != card["vocab_size"]:
        raise ModelContractError(f"text zoo model {name!r}: vocabulary size differs from its card")
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the global RNG alone
        module = build_text_net(card["arch"], card["vocab_size"], card["num_classes"], **card["net"])
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelContractError(f"weights of text zoo model {name!r} do not fit its network: {exc}") from exc
    module.eval()
    return TorchTextClassifier(module, tokenizer, num_classes=int(card["num_classes"]), batch_size=batch_size)


def _lower_words(text: str) -> list[str]:
    return [w.text.lower() for w in split_words(text)]


def tfidf_baseline(
    data: TextData, seed: int = 0, *, ngram_max: int = 2, c: float = 10.0
) -> SklearnTextClassifier:
    """TF-IDF (word 1..``ngram_max``-grams, sublinear tf) + logistic regression fitted on ``data``.

    Words come from the same regex as the attacks' (lower-cased), so an invisible character makes a word
    unknown here too. Trained in seconds at call time; nothing is pickled. Deterministic given ``seed``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(tokenizer=_lower_words, lowercase=False, token_pattern=None,
                        ngram_range=(1, ngram_max), sublinear_tf=True),
        LogisticRegression(C=c, max_iter=2000, random_state=seed),
    )  # fmt: skip
    pipeline.fit(list(data.texts), data.labels.numpy())
    return SklearnTextClassifier(pipeline)
