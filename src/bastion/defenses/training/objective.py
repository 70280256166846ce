"""What a training method is to the training loop: a loss on a batch, given the network's forward.

Every method (standard, PGD, fast FGSM, TRADES, label smoothing, distillation, noise, and the
poisoning work's retraining) is an :class:`Objective`; :func:`bastion.defenses.training.loop.train`
is the one loop that runs them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.errors import DefenseError
from bastion.threat import ThreatModel

__all__ = ["Batch", "Forward", "Objective", "StandardTraining"]

Forward = Callable[[torch.Tensor], torch.Tensor]
"""Inputs (N, ...) in input space → logits (N, K), through the module being trained."""


@dataclass(frozen=True)
class Batch:
    """One training step's inputs: ``x`` (N, ...) inside ``threat.bounds``, labels ``y`` (N,).

    ``threat`` is the threat model at this step (its epsilon follows the warm-up ramp); ``progress`` is
    the fraction of training done (0 → 1) and ``ramp`` the fraction of the epsilon warm-up done (1
    without one), for methods with their own schedules. ``index`` (N,) holds the samples' positions in
    the training set of ``dataset_size`` samples, for methods that keep per-sample state across epochs.
    """

    x: torch.Tensor
    y: torch.Tensor
    threat: ThreatModel | None
    generator: torch.Generator
    progress: float
    ramp: float = 1.0
    index: torch.Tensor | None = None
    dataset_size: int = 0

    def require_threat(self, method: str) -> ThreatModel:
        """This step's threat model; adversarial methods call it (the loop already refuses to start them
        without one, this keeps a directly called objective from failing obscurely)."""
        if self.threat is None:
            raise DefenseError(f"{method} needs a threat model")
        return self.threat


class Objective(ABC):
    """A training method's loss. ``needs_threat`` methods refuse to train without a threat model.

    ``loss`` returns ``(scalar loss, logits (N, K))``; the logits (on whatever inputs the method trains
    on) only feed the running training accuracy. ``attack_forward`` is the network in eval mode, for
    inner maximisations: attacking in eval mode keeps BatchNorm statistics free of adversarial batches
    (as in TRADES' reference set-up).
    """

    name: str = ""
    needs_threat: bool = False
    gradient_inner_attack: bool = False
    """Whether the inner attack climbs a softmax-based loss (cross-entropy, TRADES' KL) by its input
    gradient: such an attack does nothing where the softmax saturates, and harden checks for that."""

    @abstractmethod
    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def bind(self, module: nn.Module, normalise: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Called by the training loop before the first step with the module being trained (updated in
        place) and its input normalisation; methods that need the network's layers (IBP) keep them."""
        return None

    def params(self) -> dict[str, Any]:
        """Hyperparameters for the model card."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class StandardTraining(Objective):
    """Plain cross-entropy on clean inputs: the baseline every defense is compared with."""

    name = "standard"

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(batch.x)
        return F.cross_entropy(logits, batch.y), logits
