"""Shared machinery of the extraction attacks: the counted victim, clone training and the budget curve.

Clones are trained by the project's one training loop (:func:`bastion.defenses.training.loop.train`)
with :class:`SoftTargets`, an objective that looks each sample's released probability vector up by its
position in the training set (``Batch.index``): the loop's datasets carry integer labels only, and the
objective is how soft labels reach it without a second loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.base import check_positive
from bastion.attacks.extraction._shift import random_shift, shift_pixels
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import AttackError
from bastion.model import TorchClassifier
from bastion.threat import Bounds

__all__ = ["CloneTraining", "SoftTargets", "fit_clone", "targets_for"]

OUTPUTS = ("probs", "labels")
Factory = Callable[[], nn.Module]


def targets_for(released: torch.Tensor, output: str) -> torch.Tensor:
    """Training targets (N, K) from released probabilities: as released (``probs``) or the one-hot of
    their argmax (``labels``: what a label-only API gives, and all a top-1 answer is worth)."""
    if output == "labels":
        return F.one_hot(released.argmax(1), released.shape[1]).to(released.dtype)
    return released


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise AttackError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return output


class SoftTargets(Objective):
    """Cross-entropy against soft targets (N, K) looked up by ``Batch.index``, at ``temperature`` T:
    the targets are sharpened/softened as p^(1/T) (renormalised) and the loss scaled by T² (Hinton et
    al. 2015). One-hot targets make it plain cross-entropy. ``shift`` > 0 moves each image by up to
    that many pixels (:func:`random_shift`) before the forward pass."""

    name = "soft-targets"

    def __init__(self, targets: torch.Tensor, temperature: float = 1.0, shift: int = 0) -> None:
        check_positive("temperature", temperature)
        check_positive("shift", shift, integer=True, allow_zero=True)
        self.temperature, self.shift = float(temperature), int(shift)
        t = targets.clamp_min(0) ** (1.0 / self.temperature)
        self._targets = t / t.sum(1, keepdim=True).clamp_min(1e-12)

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.index is None:
            raise AttackError("soft-target training needs the batch's sample positions")
        x = random_shift(batch.x, self.shift, batch.generator) if self.shift else batch.x
        logits = forward(x)
        target = self._targets[batch.index.to(self._targets.device)].to(logits.device)
        log_p = F.log_softmax(logits / self.temperature, dim=1)
        return -(target * log_p).sum(1).mean() * self.temperature**2, logits

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "shift": self.shift}


@dataclass(frozen=True)
class CloneTraining:
    """How every clone is trained: Adam with a one-cycle schedule, ``batch_size``, peak ``lr``.

    ``epochs`` None trains for about ``steps`` optimiser steps whatever the number of queries
    (``ceil(steps / batches per epoch)`` epochs, at least ``min_epochs``): a 250-query clone needs many
    passes, a 5k one few. ``temperature`` T softens released probabilities (distillation: p^(1/T),
    loss scaled by T²); it applies to probability targets only (``labels`` trains at T = 1). The
    default 4 was chosen on MNIST *training* images (Fashion-MNIST pool, 5k queries: fidelity 88.3% at
    T = 1, 93.9% at T = 4, 94.2% at T = 10): a confident victim's probabilities are nearly one-hot at
    T = 1 and their small entries carry most of what the clone can learn.

    ``shift`` trains label-only clones of image models on copies of the queries moved by up to that
    share of the image side (0.07: 2 pixels on 28x28 and 32x32; images under 16 pixels are never
    shifted; 0 disables it); probability targets are never shifted. It is a prior, not a fact about the
    victim: a model that is not shift-invariant (a linear one, say) is served worse by it; pass
    ``shift=0`` for such victims. Chosen on MNIST training images (Fashion-MNIST pool, 5k label-only
    queries, 1,200 steps): fidelity 66.2% unshifted, 73.6% at 2 pixels. The default 3,000 steps (from
    1,200) was chosen there too: 73.6% → 84.0% with labels.
    """

    epochs: int | None = None
    steps: int = 3000
    min_epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    temperature: float = 4.0
    shift: float = 0.07

    def __post_init__(self) -> None:
        for name in ("steps", "min_epochs", "batch_size"):
            check_positive(name, getattr(self, name), integer=True)
        if self.epochs is not None:
            check_positive("epochs", self.epochs, integer=True)
        check_positive("lr", self.lr)
        check_positive("temperature", self.temperature)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not 0.0 <= self.shift < 0.5:
            raise AttackError(f"shift is a share of the image side in [0, 0.5), got {self.shift}")

    def epochs_for(self, n: int) -> int:
        if self.epochs is not None:
            return self.epochs
        return max(self.min_epochs, math.ceil(self.steps / math.ceil(n / self.batch_size)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_clone(
    factory: Factory,
    x: torch.Tensor,
    targets: torch.Tensor,
    bounds: Bounds,
    training: CloneTraining,
    seed: int,
    name: str = "clone",
) -> TorchClassifier:
    """A fresh ``factory()`` module (initialised under ``seed``) trained on inputs ``x`` (N, ...) and
    targets (N, K) through the one training loop; returned as a classifier in input space."""
    from bastion.data.dataset import Dataset
    from bastion.defenses.training.config import TrainingConfig
    from bastion.defenses.training.loop import train

    k = int(targets.shape[1])
    cfg = TrainingConfig(
        epochs=training.epochs_for(int(x.shape[0])),
        batch_size=training.batch_size,
        lr=training.lr,
        weight_decay=training.weight_decay,
        seed=seed,
        validation=0.0,
        guard=False,
    )
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the caller's global RNG stays untouched
        torch.manual_seed(seed)
        module = factory().to(x.device)
        data = Dataset(x, targets.argmax(1), num_classes=k, bounds=bounds, name="queries")
        hard = bool(((targets == 0) | (targets == 1)).all())
        shift = shift_pixels(tuple(x.shape[1:]), training.shift) if hard else 0
        objective = SoftTargets(targets, 1.0 if hard else training.temperature, shift)
        run = train(module, lambda v: v, data, objective, cfg)
    return TorchClassifier(run.module, bounds=bounds, num_classes=k, name=name)
