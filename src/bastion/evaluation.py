"""Robust-accuracy evaluation: a cascade of attacks in the manner of AutoAttack (Croce & Hein 2020).

Each stage attacks only the inputs still robust after the previous stages; an input counts as robust
only if every stage failed on it (the worst case per sample counts).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bastion.attacks import get
from bastion.attacks.base import Attack, check_inputs
from bastion.errors import AttackError
from bastion.model import Classifier, as_classifier, predict
from bastion.threat import ThreatModel

__all__ = ["PRESETS", "EvaluationResult", "StageResult", "evaluate", "preset_attacks"]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage_name, inputs_done, inputs_total)`` while a stage runs."""

# preset -> [(stage name, registry name, hyperparameters)]; the min-norm stage plays FAB-T's role.
PRESETS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "fast": [
        ("apgd-ce", "apgd-ce", {"steps": 50}),
        ("apgd-t", "apgd-t", {"steps": 50, "n_target_classes": 3}),
    ],
    "standard": [
        ("apgd-ce", "apgd-ce", {"steps": 100}),
        ("apgd-t", "apgd-t", {"steps": 100, "n_target_classes": 3}),
        ("fmn", "fmn", {"steps": 100}),
        ("square", "square", {"n_queries": 1000}),
    ],
    "thorough": [
        ("apgd-ce", "apgd-ce", {"steps": 100, "restarts": 5}),
        ("apgd-t", "apgd-t", {"steps": 200, "n_target_classes": 9, "restarts": 3}),
        ("fmn", "fmn", {"steps": 300}),
        ("square", "square", {"n_queries": 10000, "restarts": 2}),
    ],
}


def preset_attacks(preset: str, *, eot_samples: int = 1) -> list[tuple[str, Attack]]:
    """The (stage name, attack) list of a preset; ``eot_samples`` > 1 goes to every attack that takes it."""
    if preset not in PRESETS:
        raise AttackError(f"unknown preset {preset!r}; use one of: {', '.join(PRESETS)}")
    return [(stage, with_eot(get(name, **kwargs), eot_samples)) for stage, name, kwargs in PRESETS[preset]]


def with_eot(attack: Attack, eot_samples: int) -> Attack:
    """A copy of ``attack`` averaging gradients over ``eot_samples`` draws; attacks without EOT (black-box
    ones) and ``eot_samples == 1`` come back unchanged."""
    params = attack.params()
    if eot_samples == 1 or "eot_samples" not in params:
        return attack
    init = inspect.signature(type(attack).__init__).parameters
    kwargs: dict[str, Any] = {k: v for k, v in params.items() if k in init}
    return type(attack)(**{**kwargs, "eot_samples": eot_samples})


@dataclass(frozen=True)
class StageResult:
    """One stage of the cascade. ``robust_accuracy`` is the running value after this stage."""

    attack: str
    params: dict[str, Any]
    robust_accuracy: float
    n_attacked: int
    n_fooled: int
    queries: int
    gradient_evals: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "params": self.params,
            "robust_accuracy": self.robust_accuracy,
            "n_attacked": self.n_attacked,
            "n_fooled": self.n_fooled,
            "queries": self.queries,
            "gradient_evals": self.gradient_evals,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class EvaluationResult:
    """Outcome of :func:`evaluate`.

    ``robust`` (N,) bool: correctly classified and no stage found an adversarial. ``x_adv`` (N, ...):
    the adversarial found for each fooled input (the input itself elsewhere); ``predictions`` (N,)
    the model's labels on ``x_adv``.
    """

    threat: ThreatModel
    preset: str
    clean_accuracy: float
    robust_accuracy: float
    clean_correct: torch.Tensor
    robust: torch.Tensor
    x_adv: torch.Tensor
    predictions: torch.Tensor
    stages: list[StageResult]
    seconds: float
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.robust.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors)."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "n_samples": self.n_samples,
            "threat": {
                "norm": self.threat.norm.value,
                "epsilon": self.threat.epsilon,
                "bounds": list(self.threat.bounds),
            },
            "preset": self.preset,
            "seed": self.seed,
            "stages": [s.to_dict() for s in self.stages],
            "queries": sum(s.queries for s in self.stages),
            "gradient_evals": sum(s.gradient_evals for s in self.stages),
            "seconds": self.seconds,
            **self.extra,
        }


def evaluate(
    model: Classifier | nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    preset: str = "standard",
    *,
    attacks: list[tuple[str, Attack]] | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Robust accuracy of ``model`` on ``x`` (N, ...), ``y`` (N,) under ``threat``.

    ``attacks`` replaces the preset's stages with your own ``(name, attack)`` list. Stage ``i`` runs
    with seed ``seed + i`` in batches of ``batch_size`` inputs. Guarantee: every input reported
    non-robust has an ``x_adv`` inside the threat ball that the model misclassifies (or is a clean
    error).
    """
    clf = as_classifier(model, bounds=threat.bounds)
    y, _ = check_inputs(clf, x, y)
    stages_to_run = attacks if attacks is not None else preset_attacks(preset)
    if batch_size < 1:
        raise AttackError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    x = x.detach()
    clean_pred = predict(clf, x, batch_size=batch_size).argmax(dim=1)
    clean_correct = clean_pred == y
    robust = clean_correct.clone()
    x_adv = x.clone()
    predictions = clean_pred.clone()
    results: list[StageResult] = []
    for i, (stage_name, attack) in enumerate(stages_to_run):
        idx = robust.nonzero().flatten()
        t0 = time.perf_counter()
        queries = grads = fooled = 0
        for lo in range(0, idx.numel(), batch_size):
            part = idx[lo : lo + batch_size]
            res = attack(clf, x[part], y[part], threat, seed=seed + i)
            queries += res.queries
            grads += res.gradient_evals
            hit = part[res.success]
            fooled += int(hit.numel())
            robust[hit] = False
            x_adv[hit] = res.x_adv[res.success]
            predictions[hit] = res.predictions[res.success]
            if progress is not None:
                progress(stage_name, min(lo + batch_size, idx.numel()), int(idx.numel()))
        if progress is not None and idx.numel() == 0:
            progress(stage_name, 0, 0)
        results.append(
            StageResult(
                attack=stage_name,
                params=attack.params(),
                robust_accuracy=float(robust.float().mean()),
                n_attacked=int(idx.numel()),
                n_fooled=fooled,
                queries=queries,
                gradient_evals=grads,
                seconds=time.perf_counter() - t0,
            )
        )
    return EvaluationResult(
        threat=threat,
        preset=preset if attacks is None else "custom",
        clean_accuracy=float(clean_correct.float().mean()),
        robust_accuracy=float(robust.float().mean()),
        clean_correct=clean_correct,
        robust=robust,
        x_adv=x_adv,
        predictions=predictions,
        stages=results,
        seconds=time.perf_counter() - start,
        seed=seed,
    )
