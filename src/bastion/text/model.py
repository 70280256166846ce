"""The text-classifier contract: a list of strings in, logits (N, K) out.

Tokenisation, vocabularies and every other piece of preprocessing live *inside* the model wrapper, so
attacks edit the raw strings a person would type and the sanitiser (a text transform) sits in front of
any model. Adapters: :class:`TorchTextClassifier` (a PyTorch module with its own tokenizer) and
:class:`SklearnTextClassifier` (a fitted scikit-learn pipeline, e.g. TF-IDF + logistic regression, the
baseline most moderation teams run). Both are black-box to the text attacks: text is discrete, so every
attack here needs only outputs and counts every string it sends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from bastion.errors import DataError, ModelContractError

__all__ = [
    "CountingTextClassifier",
    "SklearnTextClassifier",
    "TextClassifier",
    "TorchTextClassifier",
    "as_text_classifier",
    "check_texts",
]


@runtime_checkable
class TextClassifier(Protocol):
    """Anything that maps a list of N strings to logits (N, num_classes) (float, no gradient needed)."""

    @property
    def num_classes(self) -> int | None: ...

    def __call__(self, texts: Sequence[str]) -> torch.Tensor: ...


def check_texts(texts: Sequence[str], *, doing: str = "classifying") -> list[str]:
    """``texts`` as a list; raises :class:`DataError` unless it is a non-empty sequence of str."""
    if isinstance(texts, str):
        raise DataError(f"{doing}: pass a list of strings, not one string (wrap it: [text])")
    out = list(texts)
    if not out:
        raise DataError(f"{doing}: no texts given")
    bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"{doing}: text {bad} is a {type(out[bad]).__name__}, not a str")
    return out


class TorchTextClassifier:
    """A PyTorch module over token ids, with the tokenizer that feeds it.

    ``tokenizer(texts) -> LongTensor (N, L)`` (padded ids) and ``module(ids) -> logits (N, K)``. Calls
    run in eval mode under ``no_grad`` in batches of ``batch_size`` on the module's device; the caller's
    ``module.training`` flag is restored afterwards.
    """

    def __init__(
        self,
        module: nn.Module,
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        *,
        num_classes: int | None = None,
        batch_size: int = 256,
    ) -> None:
        if batch_size < 1:
            raise ModelContractError(f"batch_size must be >= 1, got {batch_size}")
        self.module = module
        self.tokenizer = tokenizer
        self._num_classes = num_classes
        self.batch_size = batch_size

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        items = check_texts(texts)
        param = next(self.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                parts = [
                    self.module(self.tokenizer(items[i : i + self.batch_size]).to(device)).float().cpu()
                    for i in range(0, len(items), self.batch_size)
                ]
        finally:
            self.module.train(was_training)
        logits = torch.cat(parts)
        _check_logits(logits, len(items), self._num_classes)
        return logits


class SklearnTextClassifier:
    """A fitted scikit-learn estimator or pipeline whose input is raw strings (TF-IDF + LR, say).

    Logits are ``log(predict_proba)`` clipped at 1e-12 (their softmax is the estimator's probabilities,
    so margins and losses read as for a network); estimators without ``predict_proba`` use
    ``decision_function`` (a binary one becomes two columns ``[-d/2, d/2]``).
    """

    def __init__(self, estimator: Any) -> None:
        if not (hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")):
            raise ModelContractError(
                f"{type(estimator).__name__} has neither predict_proba nor decision_function; "
                "pass a fitted scikit-learn classifier or pipeline"
            )
        self.estimator = estimator
        classes = getattr(estimator, "classes_", None)
        self._num_classes = len(classes) if classes is not None else None

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        items = check_texts(texts)
        if hasattr(self.estimator, "predict_proba"):
            proba = torch.as_tensor(self.estimator.predict_proba(items), dtype=torch.float32)
            logits = proba.clamp_min(1e-12).log()
        else:
            d = torch.as_tensor(self.estimator.decision_function(items), dtype=torch.float32)
            logits = torch.stack([-d / 2, d / 2], dim=1) if d.dim() == 1 else d
        _check_logits(logits, len(items), self._num_classes)
        return logits


class CountingTextClassifier:
    """Forwards to a text classifier and counts the strings it sees (``queries``)."""

    def __init__(self, model: TextClassifier) -> None:
        self.model = model
        self.queries = 0

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        items = list(texts)
        self.queries += len(items)
        return self.model(items)


def _check_logits(logits: torch.Tensor, n: int, k: int | None) -> None:
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ModelContractError(
            f"the text model returned shape {tuple(logits.shape)} for {n} texts; expected ({n}, K)"
        )
    if k is not None and logits.shape[1] != k:
        raise ModelContractError(f"the text model returned {logits.shape[1]} classes, it declares {k}")
    if not bool(torch.isfinite(logits).all()):
        raise ModelContractError("the text model returned NaN or infinite logits")


def as_text_classifier(model: Any) -> TextClassifier:
    """A :class:`TextClassifier` from a classifier already (returned as is) or a scikit-learn estimator.

    A PyTorch module needs its tokenizer: wrap it in :class:`TorchTextClassifier` yourself.
    """
    if isinstance(model, nn.Module):
        raise ModelContractError(
            "a PyTorch text model needs its tokenizer: TorchTextClassifier(module, tokenizer, num_classes=K)"
        )
    if hasattr(model, "predict_proba") or hasattr(model, "decision_function"):
        return SklearnTextClassifier(model)
    if callable(model) and hasattr(model, "num_classes"):
        return model
    raise ModelContractError(
        f"cannot use a {type(model).__name__} as a text classifier: give a callable list[str] -> logits "
        "with num_classes, a scikit-learn pipeline, or TorchTextClassifier(module, tokenizer)"
    )
