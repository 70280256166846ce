"""Result types shared by attacks and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["AdaptiveResult", "AttackResult", "CertificationResult", "DetectionResult"]


@dataclass(frozen=True)
class AttackResult:
    """What an attack returns; produced by :class:`bastion.attacks.Attack` only.

    - ``x_adv`` (N, ...): inside the threat ball and the bounds, always.
    - ``success`` (N,) bool: recomputed on the model after projection (misclassified, or classified as
      the target for targeted attacks). Inputs the model already gets wrong count as successes.
    - ``distance`` (N,): norm of ``x_adv - x`` in the threat model's norm.
    - ``predictions`` (N,): the model's labels on ``x_adv``.
    - ``queries``: inputs forwarded through the model by the attack; ``gradient_evals``: inputs
      back-propagated through the model (once per backward pass). The base class's final verification
      is not counted.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    predictions: torch.Tensor
    queries: int
    gradient_evals: int
    seconds: float
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if self.success.numel() else 0.0

    def __len__(self) -> int:
        return int(self.success.shape[0])


@dataclass(frozen=True)
class DetectionResult:
    """How well a fitted detector separates held-out clean inputs from successful adversarials.

    Produced by :func:`bastion.detect.evaluate_detector`. Two views of the same scores:

    - threshold-free, from the held-out clean scores: ``auc`` (area under the ROC curve, ties count
      half), ``tpr_at_1pct`` / ``tpr_at_5pct`` (fraction of adversarials flagged at the highest
      threshold whose false-positive rate on the held-out clean inputs is at most 1% / 5%);
    - as deployed, at the threshold the detector chose during ``fit``: ``detection_rate`` on the
      adversarials and ``false_positive_rate`` on the held-out clean inputs.

    ``clean_scores`` (n_clean,) and ``adv_scores`` (n_adv,) are kept for plotting ROC curves. A
    detection number alone says little: report it next to an adaptive attack's evasion rate
    (:class:`bastion.detect.AdaptiveAttack`).
    """

    detector: str
    auc: float
    tpr_at_1pct: float
    tpr_at_5pct: float
    threshold: float
    detection_rate: float
    false_positive_rate: float
    clean_scores: torch.Tensor
    adv_scores: torch.Tensor

    @property
    def n_clean(self) -> int:
        return int(self.clean_scores.shape[0])

    @property
    def n_adv(self) -> int:
        return int(self.adv_scores.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors)."""
        return {
            "detector": self.detector,
            "auc": self.auc,
            "tpr_at_1pct": self.tpr_at_1pct,
            "tpr_at_5pct": self.tpr_at_5pct,
            "threshold": self.threshold,
            "detection_rate": self.detection_rate,
            "false_positive_rate": self.false_positive_rate,
            "n_clean": self.n_clean,
            "n_adv": self.n_adv,
        }


@dataclass(frozen=True)
class AdaptiveResult:
    """What :class:`bastion.detect.AdaptiveAttack` returns: an attack on a classifier guarded by a detector.

    - ``x_adv`` (N, ...): inside the threat ball ∩ bounds, always;
    - ``fooled`` (N,) bool: the model misclassifies ``x_adv``; ``evaded`` (N,) bool: fooled *and* not
      flagged (``scores <= threshold``); both recomputed on the exact detector after projection;
    - ``scores`` (N,): the detector's scores on ``x_adv``; ``distance`` (N,): norm of ``x_adv - x``.
    """

    x_adv: torch.Tensor
    fooled: torch.Tensor
    evaded: torch.Tensor
    scores: torch.Tensor
    distance: torch.Tensor
    threshold: float
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def classifier_success_rate(self) -> float:
        """Fraction of inputs the model misclassifies, detected or not."""
        return float(self.fooled.float().mean())

    @property
    def evasion_rate(self) -> float:
        """Fraction of inputs that fool the model and pass the detector: the attack's real success."""
        return float(self.evaded.float().mean())


STANDARD_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The l2 radii certified accuracy is reported at (Cohen et al. 2019's table)."""


@dataclass(frozen=True)
class CertificationResult:
    """What a certifier proves about N inputs; produced by :mod:`bastion.certify`.

    - ``prediction`` (N,) long: the certified classifier's label, ``-1`` where it ``abstained``.
    - ``radius`` (N,) float64: within this distance (in ``norm``) of the input the prediction cannot
      change — a guarantee, not an estimate (randomized smoothing's holds with probability at least
      1 - alpha over its noise). 0 where nothing beyond the input itself is certified.
    - ``abstained`` (N,) bool: the certifier refused to answer; abstentions count as errors.
    """

    prediction: torch.Tensor
    radius: torch.Tensor
    abstained: torch.Tensor
    norm: str
    method: str
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.prediction.shape[0])

    def certified(self, y: torch.Tensor, radius: float) -> torch.Tensor:
        """(N,) bool: correct, not abstained, and certified at ``radius`` or more."""
        y = y.to(self.prediction.device)
        return (~self.abstained) & (self.prediction == y) & (self.radius >= radius)

    def certified_accuracy(self, y: torch.Tensor, radius: float = 0.0) -> float:
        """Share of inputs certified correct at ``radius`` (abstentions and errors count against)."""
        return float(self.certified(y, radius).float().mean()) if len(self) else 0.0

    def curve(self, y: torch.Tensor, radii: tuple[float, ...] | None = None) -> list[tuple[float, float]]:
        """``[(radius, certified accuracy)]`` at ``radii`` (default: :data:`STANDARD_RADII`)."""
        return [(float(r), self.certified_accuracy(y, r)) for r in (radii or STANDARD_RADII)]
