"""Label flipping: change the labels of a seeded share of the training set, leave the inputs alone.

The classic availability / targeted-misclassification poison (Biggio, Nelson & Laskov 2012, "Poisoning
Attacks against Support Vector Machines", use label flips as their baseline; Xiao et al. 2012,
"Adversarial Label Flips Attack on Support Vector Machines").
"""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks.poisoning.base import PoisonAttack, check_class, check_rate, check_target, choose
from bastion.attacks.poisoning.result import PoisonResult
from bastion.data.dataset import Dataset
from bastion.errors import AttackError, DataError
from bastion.model import Classifier

__all__ = ["LabelFlip"]


class LabelFlip(PoisonAttack):
    """Flip exactly ``round(rate * pool)`` labels (half to even), chosen by the seed; inputs untouched.

    - neither ``source`` nor ``target``: the pool is every sample; each chosen one gets a uniformly
      random *other* class;
    - ``source`` and ``target``: the pool is class ``source``, flipped to ``target`` (``rate`` is the
      share of the source class);
    - only ``target``: the pool is every sample of another class, flipped to ``target``;
    - only ``source``: the pool is class ``source``, each flipped to a random other class.

    The returned dataset shares ``x`` with the input (never modified) and has new labels.
    """

    name = "label-flip"

    def __init__(self, rate: float, source: int | None = None, target: int | None = None) -> None:
        self.rate = check_rate(rate)
        self.source = check_class("source", source)
        self.target = check_class("target", target)
        if self.source is not None and self.source == self.target:
            raise AttackError(f"source and target are both class {source}: a flip must change the label")

    def _poison(
        self, data: Dataset, generator: torch.Generator, model: Classifier | nn.Module | None
    ) -> PoisonResult:
        k = data.num_classes
        if k < 2:
            raise DataError(f"{data.name} has a single class: there is no other label to flip to")
        for name, value in (("source", self.source), ("target", self.target)):
            if value is not None:
                check_target(data, name, value)
        y = data.y
        keep = torch.ones_like(y, dtype=torch.bool)
        if self.source is not None:
            keep &= y == self.source
        elif self.target is not None:
            keep &= y != self.target
        pool = keep.nonzero().flatten()
        chosen = choose(pool, round(self.rate * pool.numel()), generator)
        if self.target is not None:
            new = torch.full_like(chosen, self.target)
        else:
            # y + U{1..k-1} mod k: uniform over the k - 1 other classes, never the label itself.
            shift = torch.randint(1, k, (chosen.numel(),), generator=generator).to(y.device)
            new = (y[chosen] + shift) % k
        y_new = y.clone()
        y_new[chosen] = new
        poisoned = torch.zeros_like(y, dtype=torch.bool)
        poisoned[chosen] = True
        flipped = Dataset(
            data.x, y_new, k, data.bounds, data.class_names, f"{data.name}+{self.name}", dict(data.meta)
        )
        return PoisonResult(flipped, poisoned, y.clone(), self.name, self.params(), target=self.target)
