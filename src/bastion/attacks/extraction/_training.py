"""Shared machinery of the extraction attacks: the counted victim, clone training and the budget curve.

The victim is seen only through ``torch.softmax(victim(x), 1)`` under ``no_grad`` (what an API — or an
output policy wrapping it — releases), and every row sent is counted against a hard budget.

Clones are trained by the project's one training loop (:func:`bastion.defenses.training.loop.train`)
with :class:`SoftTargets`, an objective that looks each sample's released probability vector up by its
position in the training set (``Batch.index``): the loop's datasets carry integer labels only, and the
objective is how soft labels reach it without a second loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.base import check_positive
from bastion.attacks.extraction._shift import random_shift, shift_pixels
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import AttackError, DataError, QueryBudgetError
from bastion.model import Classifier, TorchClassifier
from bastion.threat import Bounds

__all__ = ["CloneTraining", "Oracle", "SoftTargets", "checkpoints", "fit_clone", "targets_for"]

OUTPUTS = ("probs", "labels")
Factory = Callable[[], nn.Module]


class Oracle:
    """The victim as the attacker sees it: released probabilities (N, K) sent in batches through a
    :class:`bastion.blackbox.QueryCounter` with a hard ``budget`` (rows; a request that would pass it
    raises :class:`QueryBudgetError` before anything is sent)."""

    def __init__(self, victim: Classifier, budget: int, batch_size: int = 512) -> None:
        from bastion.blackbox import QueryCounter

        self.victim, self.budget, self.batch_size = victim, int(budget), int(batch_size)
        self.counter = QueryCounter(victim, budget=self.budget)

    @property
    def queries(self) -> int:
        return self.counter.queries

    @property
    def left(self) -> int:
        return self.budget - self.counter.queries

    def released(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        if self.queries + n > self.budget:  # refuse the whole request, not its last batches
            raise QueryBudgetError(
                f"{n} more queries would exceed the budget of {self.budget} ({self.queries} used)"
            )
        parts = [self.counter.released(x[lo : lo + self.batch_size]) for lo in range(0, n, self.batch_size)]
        return torch.cat(parts).float().to(x.device)


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


def checkpoints(budget: int, budgets: tuple[int, ...]) -> list[int]:
    """The curve's budgets: every one of ``budgets`` below ``budget``, then ``budget`` itself."""
    return sorted({int(b) for b in budgets if 0 < b < budget} | {int(budget)})


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
    share of the image side (0.07: 2 pixels on 28x28, 1 on 8x8; 0 disables it); probability targets are
    never shifted. Chosen on MNIST training images (Fashion-MNIST pool, 5k label-only queries, 1,200
    steps): fidelity 66.2% unshifted, 73.6% at 2 pixels. The default 3,000 steps (from 1,200) was
    chosen there too: 73.6% → 84.0% with labels, probabilities unchanged within noise.
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


def check_shift(
    build: Factory,
    x: torch.Tensor,
    targets: torch.Tensor,
    bounds: Bounds,
    training: CloneTraining,
    seed: int,
    held_out: float = 0.2,
) -> dict[str, Any]:
    """Whether shifting helps this victim, judged on its own answers: two clones (half the steps) on a
    seeded 80% of the label-only queries, shifted and not, scored by agreement with the victim on the
    other 20%. Shifting is a prior (an image classifier's top-1 survives a move of a pixel or two); a
    victim that breaks it — a linear model on 8x8 digits loses 12 points of fidelity to it — keeps its
    clones unshifted. Costs no queries."""
    n = int(x.shape[0])
    cut = max(1, round(held_out * n))
    if n - cut < 2:  # too few answers to judge: keep the prior
        return {"used": True, "held_out": 0, "agreement": None}
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7)).to(x.device)
    fit, val = order[cut:], order[:cut]
    half = replace(training, steps=max(1, training.steps // 2))
    agreement = {}
    for name, t in (("shifted", half), ("unshifted", replace(half, shift=0.0))):
        clone = fit_clone(build, x[fit], targets[fit], bounds, t, seed)
        with torch.no_grad():
            agree = clone(x[val]).argmax(1) == targets[val].argmax(1).to(x.device)
        agreement[name] = float(agree.float().mean())
    return {"used": agreement["shifted"] > agreement["unshifted"], "held_out": cut, "agreement": agreement}


def as_inputs(pool: Any, bounds: Bounds) -> tuple[torch.Tensor, str]:
    """The pool's inputs (N, ...) and a name for the card, from a Dataset or a tensor inside ``bounds``."""
    from bastion.data.dataset import Dataset

    if isinstance(pool, Dataset):
        x, name = pool.x, pool.name
    elif isinstance(pool, torch.Tensor) and pool.is_floating_point() and pool.dim() >= 2:
        x, name = pool, "tensor"
    else:
        raise AttackError(
            f"the pool must be a bastion Dataset or a float tensor (N, ...), got {type(pool).__name__}"
        )
    if x.shape[0] and (float(x.min()) < bounds[0] - 1e-6 or float(x.max()) > bounds[1] + 1e-6):
        raise DataError(
            f"the pool's inputs span [{float(x.min()):g}, {float(x.max()):g}], outside the victim's bounds "
            f"[{bounds[0]:g}, {bounds[1]:g}]; rescale them"
        )
    return x, name


def victim_name(victim: Any) -> str:
    """The name of the model under counting/policy wrappers (their ``.model``), for the card."""
    for _ in range(8):
        if isinstance(getattr(victim, "name", None), str):
            return str(victim.name)
        if not hasattr(victim, "model"):
            break
        victim = victim.model
    return type(victim).__name__


def finish(
    *,
    attack: str,
    params: dict[str, Any],
    victim: Classifier,
    x_q: torch.Tensor,
    released: torch.Tensor,
    output: str,
    budgets: tuple[int, ...],
    factory: Factory | None,
    training: CloneTraining,
    test: Any,
    reference: Classifier | None,
    seed: int,
    pool_name: str,
    progress: Callable[[int, int], None] | None,
) -> Any:
    """Train a clone from scratch on the first b queries for every budget checkpoint b (the queries are
    reused: the total is the largest budget), measure each on ``test``, and build the result."""
    from bastion.attacks.extraction.clone import CurvePoint, ExtractionResult, small_cnn
    from bastion.model import predict

    k = int(released.shape[1])
    shape = tuple(int(d) for d in x_q.shape[1:])
    build: Factory = factory if factory is not None else (lambda: small_cnn(shape, k))
    targets = targets_for(released, output)
    shift_check = None
    if output == "labels" and shift_pixels(shape, training.shift) > 0:
        shift_check = check_shift(build, x_q, targets, victim.bounds, training, seed)
        if not shift_check["used"]:
            training = replace(training, shift=0.0)
    truth = None
    evaluation_queries = 0
    if test is not None:
        judge = reference if reference is not None else victim
        truth = predict(judge, test.x).argmax(1)
        evaluation_queries = 0 if reference is not None else len(test)
    points: list[int] = checkpoints(int(x_q.shape[0]), budgets)
    curve = []
    clone = None
    for i, b in enumerate(points):
        clone = fit_clone(build, x_q[:b], targets[:b], victim.bounds, training, seed, name=f"{attack}-clone")
        acc = fid = None
        if test is not None and truth is not None:
            pred = predict(clone, test.x).argmax(1)
            acc = float((pred == test.y.to(pred.device)).float().mean())
            fid = float((pred == truth.to(pred.device)).float().mean())
        curve.append(CurvePoint(b, acc, fid))
        if progress is not None:
            progress(i + 1, len(points))
    if clone is None:
        raise AttackError("no queries to train a clone on: the budget must be at least 1")
    info = {
        "attack": attack,
        "victim": victim_name(victim),
        "pool": pool_name,
        "test_data": None if test is None else getattr(test, "name", "test"),
        "architecture": "small_cnn" if factory is None else getattr(factory, "__name__", repr(factory)),
        "input_shape": list(shape),
        "training": training.to_dict(),
        "shift_check": shift_check,
    }
    return ExtractionResult(clone, int(x_q.shape[0]), curve, output, params, seed, evaluation_queries, info)
