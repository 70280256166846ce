"""Text classifiers under attack: the model contract, the text threat model, its verifier, attacks and
the sanitiser. A text model maps a list of strings to logits; every attack here is black-box.

Imports are explicit; heavy resources (WordNet, embeddings, encoders) load only when an attack uses them.
"""

from __future__ import annotations

from bastion.text.constraints import Resources, violations
from bastion.text.model import (
    CountingTextClassifier,
    SklearnTextClassifier,
    TextClassifier,
    TorchTextClassifier,
    as_text_classifier,
)
from bastion.text.threat import CHAR_EDITS, EDITS, WORD_EDITS, TextThreatModel

__all__ = [
    "CHAR_EDITS",
    "EDITS",
    "WORD_EDITS",
    "CountingTextClassifier",
    "Resources",
    "SklearnTextClassifier",
    "TextClassifier",
    "TextThreatModel",
    "TorchTextClassifier",
    "as_text_classifier",
    "violations",
]
