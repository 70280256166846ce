"""Confidence-based detectors: flag inputs the model is unsure about.

- ``"msp"``: 1 - maximum softmax probability. Hendrycks & Gimpel, "A Baseline for Detecting Misclassified
  and Out-of-Distribution Examples in Neural Networks", ICLR 2017.
- ``"energy"``: the free energy ``E(x) = -T * logsumexp(f(x) / T)`` of the logits ``f(x)`` (N, K); low
  energy (a high negative energy, Liu et al.'s in-distribution score) means in-distribution. Liu, Wang,
  Owens, Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020.

These are out-of-distribution and misclassification detectors. Against adversarial examples they catch
only low-confidence ones (C&W with ``confidence=0``, DeepFool); a PGD adversarial that maximises the
loss is usually *more* confident than clean data and passes, and any attack can raise its margin.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bastion.detect.base import Detector, DetectorError
from bastion.model import Classifier

__all__ = ["ConfidenceDetector"]

_SCORES = ("energy", "msp")


class ConfidenceDetector(Detector):
    """Score (N,) = ``1 - max softmax(logits / T)`` (``score="msp"``, in [0, 1 - 1/K]) or
    ``-T * logsumexp(logits / T)`` (``score="energy"``); higher = less confident = more suspicious.

    ``temperature`` T > 0 defaults to 1, the setting of both papers.
    """

    name: ClassVar[str] = "confidence"

    def __init__(
        self, score: str = "msp", *, temperature: float = 1.0, fpr: float = 0.05, batch_size: int = 512
    ) -> None:
        super().__init__(fpr=fpr, batch_size=batch_size)
        if score not in _SCORES:
            raise DetectorError(f"unknown confidence score {score!r}; use one of: {', '.join(_SCORES)}")
        if not isinstance(temperature, int | float) or not temperature > 0:
            raise DetectorError(f"temperature must be a number > 0, got {temperature!r}")
        self.kind = score
        self.temperature = float(temperature)

    def _score(self, model: Classifier, x: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        z = model(x) / self.temperature
        if self.kind == "msp":
            return 1.0 - torch.softmax(z, dim=1).amax(dim=1)
        return -self.temperature * torch.logsumexp(z, dim=1)

    def __repr__(self) -> str:
        return f"ConfidenceDetector(score={self.kind!r}, temperature={self.temperature:g}, fpr={self.fpr})"
