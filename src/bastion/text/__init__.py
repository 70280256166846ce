"""Text classifiers under attack: the model contract, the text threat model, its verifier, attacks and
the sanitiser. A text model maps a list of strings to logits; every attack here is black-box.

Imports are explicit; heavy resources (WordNet, embeddings, encoders) load only when an attack uses them.
"""

from __future__ import annotations

from bastion.text.constraints import Resources, violations
from bastion.text.data import TextData, load_text_csv, load_text_dataset, stratified_split
from bastion.text.evaluation import TextEvaluation, evaluate_text
from bastion.text.model import (
    CountingTextClassifier,
    SklearnTextClassifier,
    TextClassifier,
    TorchTextClassifier,
    as_text_classifier,
)
from bastion.text.registry import TEXT_ATTACKS, make_text_attack
from bastion.text.sanitise import SanitisedTextClassifier, Sanitiser, nfkc_only
from bastion.text.threat import CHAR_EDITS, EDITS, WORD_EDITS, TextThreatModel
from bastion.text.tokenizer import WordTokenizer
from bastion.text.zoo import TEXT_ZOO, load_text_model, tfidf_baseline

__all__ = [
    "CHAR_EDITS",
    "EDITS",
    "TEXT_ATTACKS",
    "TEXT_ZOO",
    "WORD_EDITS",
    "CountingTextClassifier",
    "Resources",
    "SanitisedTextClassifier",
    "Sanitiser",
    "SklearnTextClassifier",
    "TextClassifier",
    "TextData",
    "TextEvaluation",
    "TextThreatModel",
    "TorchTextClassifier",
    "WordTokenizer",
    "as_text_classifier",
    "evaluate_text",
    "load_text_csv",
    "load_text_dataset",
    "load_text_model",
    "make_text_attack",
    "nfkc_only",
    "stratified_split",
    "tfidf_baseline",
    "violations",
]
