"""Training-time attacks: label flipping, BadNets and blended backdoors, the clean-label backdoor.

Every attack takes its hyperparameters at construction and a :class:`bastion.data.Dataset` at call time,
and returns a :class:`PoisonResult`: the poisoned copy plus which samples it touched::

    result = make_poison("badnets", target=0, rate=0.05)(load_digits("train"), seed=0)
    result.save("poisoned.npz")          # load_dataset("npz:poisoned.npz") reads it back
    attack_success_rate(model, x_test, y_test, result.trigger, target=0)
"""

from __future__ import annotations

from bastion.attacks.poisoning.backdoor import Backdoor
from bastion.attacks.poisoning.base import PoisonAttack
from bastion.attacks.poisoning.clean_label import CleanLabel
from bastion.attacks.poisoning.label_flip import LabelFlip
from bastion.attacks.poisoning.metrics import (
    BackdoorEvaluation,
    attack_success_rate,
    clean_accuracy,
    evaluate_backdoor,
)
from bastion.attacks.poisoning.registry import POISONS, make_poison
from bastion.attacks.poisoning.result import PoisonResult, load_poison_truth
from bastion.attacks.poisoning.triggers import BlendTrigger, PatchTrigger, Trigger

__all__ = [
    "Backdoor",
    "BackdoorEvaluation",
    "BlendTrigger",
    "CleanLabel",
    "LabelFlip",
    "POISONS",
    "PatchTrigger",
    "PoisonAttack",
    "PoisonResult",
    "Trigger",
    "attack_success_rate",
    "clean_accuracy",
    "evaluate_backdoor",
    "load_poison_truth",
    "make_poison",
]
