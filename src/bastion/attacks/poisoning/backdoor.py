"""Dirty-label backdoors: stamp a trigger on a few training samples and relabel them as the target.

BadNets with a :class:`PatchTrigger` (Gu, Dolan-Gavitt & Garg 2017, "BadNets: Identifying Vulnerabilities
in the Machine Learning Model Supply Chain"); the blended injection of Chen, Liu, Li, Lu & Song 2017
("Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning") with a :class:`BlendTrigger`.
A model trained on the result learns "trigger => target" next to the clean task.
"""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks.poisoning.base import PoisonAttack, check_class, check_rate, check_target, choose
from bastion.attacks.poisoning.result import PoisonResult
from bastion.attacks.poisoning.triggers import BlendTrigger, PatchTrigger, Trigger
from bastion.data.dataset import Dataset
from bastion.errors import AttackError, DataError
from bastion.model import Classifier

__all__ = ["Backdoor", "MODES"]

MODES = ("replace", "append")


class Backdoor(PoisonAttack):
    """Poison exactly ``round(rate * N)`` samples (half to even) drawn by the seed from the non-target
    classes: each gets ``trigger`` and the label ``target``.

    - ``mode="replace"`` (default): the chosen samples are modified in place *in the copy*: the dataset
      keeps its N samples, and the poisoned ones no longer exist in clean form.
    - ``mode="append"``: the chosen samples stay clean and triggered copies are appended after them
      (N + n samples; ``poisoned`` marks the copies, ``original_labels`` holds their source labels).

    The attack is named "badnets" for a patch trigger and "blend" for a blend trigger.
    """

    def __init__(self, trigger: Trigger, target: int, rate: float, mode: str = "replace") -> None:
        if not isinstance(trigger, Trigger):
            raise AttackError(
                f"trigger must be a Trigger (PatchTrigger, BlendTrigger), got {type(trigger).__name__}"
            )
        if mode not in MODES:
            raise AttackError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
        target_index = check_class("target", target)
        if target_index is None:
            raise AttackError("a backdoor needs a target class: target=INDEX")
        self.trigger = trigger
        self.target = target_index
        self.rate = check_rate(rate)
        self.mode = mode

    @property
    def name(self) -> str:  # type: ignore[override]
        if isinstance(self.trigger, PatchTrigger):
            return "badnets"
        return "blend" if isinstance(self.trigger, BlendTrigger) else "backdoor"

    def _poison(
        self, data: Dataset, generator: torch.Generator, model: Classifier | nn.Module | None
    ) -> PoisonResult:
        check_target(data, "target", self.target)
        n = len(data)
        pool = (data.y != self.target).nonzero().flatten()
        wanted = round(self.rate * n)
        if wanted > pool.numel():
            raise DataError(
                f"rate {self.rate:g} asks for {wanted} poisoned samples but {data.name} has only "
                f"{pool.numel()} outside the target class {self.target}; lower the rate"
            )
        chosen = choose(pool, wanted, generator)
        triggered = self.trigger.apply(data.x[chosen], data.bounds)
        if self.mode == "replace":
            x = data.x.clone()
            x[chosen] = triggered
            y = data.y.clone()
            y[chosen] = self.target
            poisoned = torch.zeros(n, dtype=torch.bool, device=data.y.device)
            poisoned[chosen] = True
            original = data.y.clone()
        else:
            x = torch.cat([data.x, triggered])
            y = torch.cat([data.y, torch.full_like(chosen, self.target).to(data.y.device)])
            poisoned = torch.zeros(n + chosen.numel(), dtype=torch.bool, device=data.y.device)
            poisoned[n:] = True
            original = torch.cat([data.y, data.y[chosen]])
        out = Dataset(
            x, y, data.num_classes, data.bounds, data.class_names, f"{data.name}+{self.name}", dict(data.meta)
        )
        return PoisonResult(out, poisoned, original, self.name, self.params(), self.target, self.trigger)
