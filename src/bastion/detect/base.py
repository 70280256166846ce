"""The detector contract: ``fit(model, clean_x)`` → ``score(x)`` → ``detect(x)``.

A detector flags inputs as adversarial. ``score`` (N,) is higher for more suspicious inputs; ``fit``
scores clean data and keeps the threshold whose false-positive rate on it is at most ``fpr``;
``detect`` is ``score > threshold``. Subclasses implement ``_score`` only (and ``_prepare`` when they
need to look at the clean data first).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

import torch
from torch import nn

from bastion.attacks.base import check_batch
from bastion.errors import DataError, DetectorError
from bastion.model import Classifier, as_classifier

__all__ = ["Calibration", "Detector", "DetectorError", "as_scores", "check_fpr", "threshold_at_fpr"]


def check_fpr(fpr: float) -> float:
    """``fpr`` as a float; DetectorError unless 0 < fpr < 1."""
    ok = isinstance(fpr, int | float) and not isinstance(fpr, bool) and math.isfinite(fpr)
    if not ok or not 0.0 < float(fpr) < 1.0:
        raise DetectorError(f"fpr must be a false-positive rate in (0, 1), e.g. 0.05; got {fpr!r}")
    return float(fpr)


def as_scores(scores: torch.Tensor | Sequence[float], name: str = "scores") -> torch.Tensor:
    """``scores`` as a 1-D float64 CPU tensor; DataError when empty, not 1-D, NaN or infinite."""
    t = torch.as_tensor(scores).detach().to("cpu", torch.float64)
    if t.dim() != 1 or t.numel() == 0:
        raise DataError(f"{name} must be a non-empty 1-D sequence of scores, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} contain NaN or infinite values; check the detector's inputs")
    return t


def threshold_at_fpr(clean_scores: torch.Tensor | Sequence[float], fpr: float) -> float:
    """The lowest threshold ``t`` such that at most ``floor(fpr * n)`` of the ``n`` clean scores are ``> t``.

    That is the ``k + 1``-th largest clean score, ``k = floor(fpr * n)``. For a new clean input
    exchangeable with the ``n`` (i.i.d. draws, continuous scores), ``P(score > t) = k / (n + 1) <= fpr``:
    the false-positive rate on held-out data is at most the requested one, and within ``1 / n`` of it.
    With ``n < 1 / fpr`` clean scores no false positive is allowed and ``t`` is their maximum.
    """
    s = as_scores(clean_scores, "clean scores").sort(descending=True).values
    k = math.floor(check_fpr(fpr) * s.numel() + 1e-9)
    return float(s[k])


@dataclass(frozen=True)
class Calibration:
    """What ``fit`` learned: ``threshold`` for the requested ``fpr``, from ``n_clean`` clean inputs of
    shape ``input_shape``; ``clean_fpr`` is the fraction of those inputs scoring above the threshold."""

    threshold: float
    fpr: float
    n_clean: int
    clean_fpr: float
    input_shape: tuple[int, ...]


class Detector(ABC):
    """Base of every adversarial-input detector.

    Hyperparameters at construction (``fpr``: the target false-positive rate), then::

        detector = FeatureSqueezing().fit(model, x_clean)   # x_clean (N, ...) inside model.bounds
        flagged = detector.detect(x)                         # (N,) bool
    """

    name: ClassVar[str] = "detector"

    def __init__(self, *, fpr: float = 0.05, batch_size: int = 512) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DetectorError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.fpr = check_fpr(fpr)
        self.batch_size = batch_size
        self._model: Classifier | None = None
        self._calibration: Calibration | None = None

    def fit(self, model: Classifier | nn.Module, clean_x: torch.Tensor) -> Self:
        """Score ``clean_x`` (N, ...) on ``model`` and keep the threshold for ``fpr``; returns self."""
        clf = as_classifier(model)
        x = self._check(clf, clean_x, None)
        self._prepare(clf, x)
        scores = self._batched(clf, x)
        threshold = threshold_at_fpr(scores, self.fpr)
        self._model = clf
        self._calibration = Calibration(
            threshold=threshold,
            fpr=self.fpr,
            n_clean=int(x.shape[0]),
            clean_fpr=float((scores > threshold).double().mean()),
            input_shape=tuple(x.shape[1:]),
        )
        return self

    @property
    def model(self) -> Classifier:
        """The classifier this detector was fitted on."""
        return self._fitted()[0]

    @property
    def calibration(self) -> Calibration:
        return self._fitted()[1]

    @property
    def threshold(self) -> float:
        """Inputs scoring above this are flagged; chosen by ``fit`` for the requested ``fpr``."""
        return self._fitted()[1].threshold

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Suspicion scores (N,) for ``x`` (N, ...), higher = more suspicious; no gradients."""
        model, cal = self._fitted()
        return self._batched(model, self._check(model, x, cal.input_shape))

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) bool: ``score(x) > threshold``."""
        return self.score(x) > self.threshold

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N,) with a gradient path to ``x`` (BPDA through non-differentiable steps), for
        adaptive attacks; ``x`` must already be a valid batch."""
        return self._score(self._fitted()[0], x, differentiable=True)

    @abstractmethod
    def _score(self, model: Classifier, x: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        """Scores (N,) for a validated batch ``x``. With ``differentiable`` the result must carry a
        gradient to ``x``; without, it runs under ``torch.no_grad``."""

    def _prepare(self, model: Classifier, clean_x: torch.Tensor) -> None:  # noqa: B027 (optional hook)
        """Hook run by ``fit`` before scoring the clean data (pick defaults from its shape ...)."""

    def _fitted(self) -> tuple[Classifier, Calibration]:
        if self._model is None or self._calibration is None:
            raise DetectorError(
                f"{type(self).__name__} is not fitted: call .fit(model, clean_x) with clean inputs first"
            )
        return self._model, self._calibration

    @torch.no_grad()
    def _batched(self, model: Classifier, x: torch.Tensor) -> torch.Tensor:
        parts = [
            self._score(model, x[i : i + self.batch_size], differentiable=False).detach()
            for i in range(0, x.shape[0], self.batch_size)
        ]
        scores = torch.cat(parts).to(torch.float64)
        if not bool(torch.isfinite(scores).all()):
            raise DataError(f"{self.name} produced NaN/infinite scores; the model's logits are not finite")
        return scores

    @staticmethod
    def _check(model: Classifier, x: torch.Tensor, shape: tuple[int, ...] | None) -> torch.Tensor:
        check_batch(model, x, doing="scoring it")
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise DataError(
                f"x has inputs of shape {tuple(x.shape[1:])}, but the detector was fitted on {shape}"
            )
        return x.detach()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fpr={self.fpr})"
