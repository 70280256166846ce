"""The one training loop: every method (and the poisoning work's retraining) runs through it.

Per epoch it shuffles with a seeded generator, runs the objective on each batch, steps the optimiser
and schedule, then measures clean and PGD accuracy on held-out data. With a threat model and the
guard on, it keeps the best checkpoint by held-out PGD accuracy and stops when that accuracy
collapses (catastrophic overfitting); with ``patience`` it stops once the held-out accuracy (PGD with
a threat model, clean otherwise) has not improved for that many checks (early stopping). The returned
module is the best checkpoint. DP-SGD swaps in Opacus' optimizer and Poisson batches (``dp_sgd.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn

from bastion.data.dataset import Dataset
from bastion.defenses.training.checks import Guard, accuracy, pgd_accuracy
from bastion.defenses.training.config import TrainingConfig
from bastion.defenses.training.dp_sgd import DPSGD
from bastion.defenses.training.objective import Batch, Objective
from bastion.defenses.training.run import EpochStats, Progress, TrainingRun
from bastion.errors import DefenseError
from bastion.threat import ThreatModel

__all__ = ["train"]


def _optimizer(module: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay
    )


def train(
    module: nn.Module,
    normalise: Callable[[torch.Tensor], torch.Tensor],
    train_set: Dataset,
    objective: Objective,
    config: TrainingConfig,
    *,
    threat: ThreatModel | None = None,
    validation_set: Dataset | None = None,
    progress: Progress | None = None,
) -> TrainingRun:
    """Train ``module`` in place on ``train_set`` (inputs in input space; ``normalise`` maps them to what
    the module expects) and return the run. ``threat`` is required by adversarial objectives and
    enables the held-out PGD check. Call under a forked, seeded RNG for reproducible dropout/init.
    """
    if objective.needs_threat and threat is None:
        raise DefenseError(f"method {objective.name!r} needs a threat model (norm and epsilon)")
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    cfg = config
    shuffle = torch.Generator().manual_seed(cfg.seed)
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    optimizer = _optimizer(module, cfg)
    n = len(train_set)
    per_epoch = math.ceil(n / cfg.batch_size)
    private = None
    if isinstance(objective, DPSGD):  # clipped, noised steps on Poisson batches, counted by Opacus
        private = objective.privatise(module, optimizer, n, cfg.batch_size, cfg.epochs, cfg.seed)
        per_epoch = private.steps_per_epoch
    total_steps = per_epoch * cfg.epochs
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps)
        if cfg.schedule == "onecycle"
        else None
    )
    check_at = {round(per_epoch * (k + 1) / cfg.checks_per_epoch) for k in range(cfg.checks_per_epoch)}

    def forward(x: torch.Tensor) -> torch.Tensor:
        return module(normalise(x))

    def attack_forward(x: torch.Tensor) -> torch.Tensor:
        was = module.training
        module.eval()
        try:
            return module(normalise(x))
        finally:
            module.train(was)

    objective.bind(module, normalise)
    val_x: torch.Tensor | None = None
    val_y = torch.empty(0, dtype=torch.long)
    if validation_set is not None and len(validation_set):
        val_x, val_y = validation_set.x.to(device), validation_set.y.to(device)
    guarded = cfg.guard and objective.needs_threat and threat is not None and val_x is not None
    guard = Guard(cfg.guard_drop if guarded else 1.0)  # drop 1: keeps the best, never calls a collapse
    since_best = 0  # held-out checks since the last strict improvement (early stopping)
    history: list[EpochStats] = []
    notes: list[str] = []
    start = time.perf_counter()
    stopped = False
    step = 0
    step_optimizer = optimizer if private is None else private.optimizer
    try:
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=shuffle)
            batches = (
                (order[b * cfg.batch_size : (b + 1) * cfg.batch_size] for b in range(per_epoch))
                if private is None
                else private.epoch()
            )
            module.train()
            t0, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
            for b, index in enumerate(batches):
                x, y = train_set.x[index].to(device), train_set.y[index].to(device)
                done = step / total_steps
                ramp = min(1.0, (step + 1) / (cfg.epsilon_ramp * per_epoch)) if cfg.epsilon_ramp > 0 else 1.0
                batch_threat = threat.with_epsilon(threat.epsilon * ramp) if threat is not None else None
                loss, logits = objective.loss(
                    forward, attack_forward, Batch(x, y, batch_threat, noise, done, ramp, index, n)
                )
                if not torch.isfinite(loss):
                    raise DefenseError(
                        f"training diverged (loss {float(loss)}) at epoch {epoch + 1}, batch {b + 1}; "
                        "lower the learning rate"
                    )
                step_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                step_optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                total_loss += float(loss.detach()) * len(index)
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += len(index)
                if progress is not None:
                    progress(
                        "batch",
                        {
                            "epoch": epoch + 1,
                            "batch": b + 1,
                            "batches": per_epoch,
                            "loss": total_loss / max(seen, 1),
                        },
                    )
                if b + 1 not in check_at:
                    continue
                module.eval()
                at = epoch + (b + 1) / per_epoch
                stats = EpochStats(
                    epoch=round(at, 3),
                    loss=total_loss / max(seen, 1),
                    train_accuracy=correct / max(seen, 1),
                    epsilon=None if batch_threat is None else batch_threat.epsilon,
                    lr=float(optimizer.param_groups[0]["lr"]),
                    seconds=time.perf_counter() - t0,
                    val_accuracy=None if val_x is None else accuracy(forward, val_x, val_y, cfg.batch_size),
                    val_robust_accuracy=(
                        None
                        if val_x is None or threat is None
                        else pgd_accuracy(
                            forward,
                            val_x[: cfg.guard_samples],
                            val_y[: cfg.guard_samples],
                            threat,
                            cfg,
                            cfg.seed + step,
                        )
                    ),
                )
                module.train()
                history.append(stats)
                t0 = time.perf_counter()  # the next check's seconds cover training since this one
                if progress is not None:
                    progress("epoch", asdict(stats))
                held_out = stats.val_robust_accuracy if guarded else stats.val_accuracy
                if held_out is None or not (guarded or cfg.patience):
                    continue
                improved = guard.best_accuracy is None or held_out > guard.best_accuracy  # a tie is no gain
                collapse = guard.update(module, stats.epoch, held_out)
                since_best = 0 if improved else since_best + 1
                if collapse is None and cfg.patience and since_best >= cfg.patience:
                    collapse = (
                        f"early stopping at epoch {stats.epoch:g}: held-out {'PGD' if guarded else 'clean'} "
                        f"accuracy has not improved for {since_best} checks; restored epoch "
                        f"{guard.best_epoch:g} ({guard.best_accuracy:.1%})"
                    )
                if collapse is not None:
                    notes.append(collapse)
                    stopped = True
                    break
            if stopped:
                break
    finally:
        privacy = None if private is None else private.close()
    guard.restore(module)
    module.eval()
    return TrainingRun(
        module=module,
        history=history,
        seconds=time.perf_counter() - start,
        stopped_early=stopped,
        best_epoch=guard.best_epoch,
        notes=notes,
        privacy=privacy,
    )
