"""What a training run returns: the trained module, its per-check history, and how it ended."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

__all__ = ["EpochStats", "Progress", "TrainingRun"]

Progress = Callable[[str, dict[str, Any]], None]
"""``progress("batch", {epoch, batch, batches, loss})`` and ``progress("epoch", EpochStats dict)``."""


@dataclass(frozen=True)
class EpochStats:
    """One check of the model: after a whole epoch, or a fraction of one (``checks_per_epoch`` > 1).

    ``loss`` and ``train_accuracy`` average over the epoch so far; ``seconds`` is the training time
    since the previous check (the check itself excluded).
    """

    epoch: float
    loss: float
    train_accuracy: float
    epsilon: float | None
    lr: float
    seconds: float
    val_accuracy: float | None = None
    val_robust_accuracy: float | None = None


@dataclass(frozen=True)
class TrainingRun:
    """The trained ``module`` (the guard's best checkpoint when it ran), per-check ``history``, and for
    DP-SGD the ``privacy`` record (accountant, epsilon spent, noise multiplier, sample rate, steps)."""

    module: nn.Module
    history: list[EpochStats]
    seconds: float
    stopped_early: bool = False
    best_epoch: float | None = None
    notes: list[str] = field(default_factory=list)
    privacy: dict[str, Any] | None = None

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(h) for h in self.history]
