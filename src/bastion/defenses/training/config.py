"""How a model is trained: optimiser, schedule, epsilon warm-up, validation and the overfitting guard."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bastion.errors import DefenseError

__all__ = ["TrainingConfig"]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "constant")


@dataclass(frozen=True)
class TrainingConfig:
    """Training hyperparameters (frozen; derive variants with ``dataclasses.replace``).

    - ``lr`` is the peak learning rate; ``onecycle`` warms up then anneals (cosine), which lets short
      runs converge; ``sgd`` is Nesterov momentum 0.9.
    - ``epsilon_ramp``: epochs over which the training epsilon grows linearly from 0 to the threat's
      (fractions allowed); large-epsilon training from scratch often needs it (Gowal et al. 2018).
    - ``validation``: the share of the training data held out (seeded) to measure clean and PGD
      accuracy after every epoch; 0 disables it.
    - ``guard`` (methods with a threat model): keep the checkpoint with the best held-out PGD accuracy
      and stop as soon as that accuracy falls more than ``guard_drop`` below its best — catastrophic
      overfitting (Wong et al. 2020). ``guard_steps``/``guard_samples`` size that PGD check, run
      ``checks_per_epoch`` times per epoch.
    - ``patience`` (early stopping; 0 disables it): stop once the held-out accuracy (PGD with the
      guard, clean otherwise) has not improved for that many checks, and keep the best checkpoint.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "onecycle"
    epsilon_ramp: float = 0.0
    seed: int = 0
    validation: float = 0.1
    guard: bool = True
    guard_drop: float = 0.2
    guard_steps: int = 10
    guard_samples: int = 500
    checks_per_epoch: int = 1
    patience: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "guard_steps", "guard_samples", "checks_per_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise DefenseError(f"{name} must be a positive integer, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise DefenseError(f"unknown optimizer {self.optimizer!r}; use one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise DefenseError(f"unknown schedule {self.schedule!r}; use one of: {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise DefenseError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.epsilon_ramp < 0:
            raise DefenseError("weight_decay and epsilon_ramp must be >= 0")
        if not 0.0 <= self.momentum < 1.0:
            raise DefenseError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise DefenseError(f"patience must be a non-negative integer, got {self.patience!r}")
        if self.patience and self.validation == 0:
            raise DefenseError("early stopping (patience) needs held-out data: set validation > 0 (e.g. 0.1)")
        if not 0.0 <= self.validation < 1.0:
            raise DefenseError(f"validation must lie in [0, 1), got {self.validation}")
        if not 0.0 < self.guard_drop <= 1.0:
            raise DefenseError(f"guard_drop must lie in (0, 1], got {self.guard_drop}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
