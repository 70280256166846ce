"""The training methods by name, and how an objective is built from a name and its options."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from bastion.defenses.training.ablation import AblationTraining
from bastion.defenses.training.atta import ATTA
from bastion.defenses.training.distillation import Distillation
from bastion.defenses.training.dp_sgd import DPSGD
from bastion.defenses.training.fgsm_rs import FastFGSM
from bastion.defenses.training.ibp import IBPTraining
from bastion.defenses.training.label_smoothing import LabelSmoothing
from bastion.defenses.training.n_fgsm import NFGSM
from bastion.defenses.training.noise import GaussianNoise
from bastion.defenses.training.objective import Objective, StandardTraining
from bastion.defenses.training.patch import UniversalPatchTraining
from bastion.defenses.training.pgd import PGDTraining
from bastion.defenses.training.trades import TRADES
from bastion.errors import DefenseError

__all__ = ["METHODS", "make_objective"]

METHODS: dict[str, type[Objective]] = {
    "standard": StandardTraining,
    "pgd": PGDTraining,
    "fgsm-rs": FastFGSM,
    "n-fgsm": NFGSM,
    "atta": ATTA,
    "trades": TRADES,
    "label-smoothing": LabelSmoothing,
    "distillation": Distillation,
    "noise": GaussianNoise,
    "ibp": IBPTraining,
    "dp-sgd": DPSGD,
    "patch": UniversalPatchTraining,
    "ablation": AblationTraining,
}

_PRIVACY_OPTIONS = {"target_epsilon", "delta", "max_grad_norm", "accountant", "fix_model"}


def make_objective(
    method: str, options: dict[str, Any], teacher: Callable[..., Any] | None = None
) -> Objective:
    """The objective for ``method`` with its ``options``; unknown methods or options list the valid ones."""
    if method not in METHODS:
        raise DefenseError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    cls = METHODS[method]
    privacy = sorted(_PRIVACY_OPTIONS & set(options))
    if cls is not DPSGD and privacy:
        if cls.needs_threat:
            raise DefenseError(
                f"dp-sgd cannot be combined with adversarial training ({method}): its accounting covers "
                f"plain cross-entropy steps only; train with --method dp-sgd or --method {method}"
            )
        raise DefenseError(f"{', '.join(privacy)} belong to --method dp-sgd, not {method!r}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "teacher")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DefenseError(
            f"method {method!r} has no option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted) or 'none'}"
        )
    if cls is Distillation:
        return Distillation(teacher, **options)
    return cls(**options)
