"""Evaluate a transform defense twice: as a naive evaluator would, and adaptively (BPDA + EOT).

Athalye, Carlini & Wagner (2018), "Obfuscated Gradients Give a False Sense of Security": input
transformations that round (JPEG, bit depth) give zero gradients, and randomised ones give noisy
gradients, so an evaluation that differentiates through them as written reports robustness that an
adaptive attacker removes. :func:`evaluate_defense` runs the same attack cascade both ways:

- *naive*: the preset against ``DefendedClassifier(mode="naive")``, one draw per gradient;
- *adaptive*: the preset against ``DefendedClassifier(mode="bpda")`` with EOT on the gradient attacks
  (Athalye, Engstrom, Ilyas & Kwok 2018); inputs the naive run broke count as broken too (a last
  stage named ``naive-union``), so the adaptive robust accuracy is never above the naive one.

Believe the adaptive number. With randomised transforms, "robust" means no attack found an input the
defended model misclassified on the draw that checked it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion.defenses.defended import DefendedClassifier, as_transforms
from bastion.defenses.transforms import DefenseError, Transform
from bastion.evaluation import EvaluationResult, Progress, StageResult, evaluate, preset_attacks
from bastion.model import Classifier, as_classifier
from bastion.threat import ThreatModel

__all__ = ["DefenseEvaluation", "evaluate_defense"]

EXPLANATION = (
    "believe the adaptive number: the naive evaluation differentiates through the transforms as written, "
    "where rounding gives zero gradients and randomness noisy ones, so its attacks fail for reasons an "
    "attacker can remove; the adaptive one back-propagates through a differentiable surrogate (BPDA) and "
    "averages gradients over random draws (EOT), and also counts every input the naive one broke"
)


@dataclass(frozen=True)
class DefenseEvaluation:
    """Both evaluations of a transform defense. ``adaptive`` is the headline (see module docs)."""

    naive: EvaluationResult
    adaptive: EvaluationResult
    defense: str
    eot_samples: int

    @property
    def believe(self) -> str:
        """Which evaluation to believe: always ``"adaptive"``."""
        return "adaptive"

    @property
    def explanation(self) -> str:
        return EXPLANATION

    @property
    def robust_accuracy(self) -> float:
        """The headline: the adaptive robust accuracy."""
        return self.adaptive.robust_accuracy

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with both evaluations (no tensors)."""
        return {
            "defense": self.defense,
            "eot_samples": self.eot_samples,
            "believe": self.believe,
            "explanation": self.explanation,
            "clean_accuracy": self.adaptive.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "naive_robust_accuracy": self.naive.robust_accuracy,
            "naive": self.naive.to_dict(),
            "adaptive": self.adaptive.to_dict(),
        }


def evaluate_defense(
    model: Classifier | nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    transforms: str | Transform | Sequence[Transform],
    preset: str = "standard",
    *,
    eot_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: Progress | None = None,
    engine: Any = None,
    run_dir: str | Path | None = None,
    shard_size: int = 500,
) -> DefenseEvaluation:
    """Naive and adaptive robust accuracy of ``model`` behind ``transforms`` on ``x`` (N, C, H, W).

    ``y`` (N,) are the labels. ``transforms``: a spec (``"jpeg:75,bits:4"``) or Transform objects.
    ``eot_samples`` (adaptive gradient attacks only) defaults to 20 when a transform is randomised,
    else 1. Stages report progress as ``"naive apgd-ce"`` / ``"adaptive apgd-ce"``. Deterministic for
    a seed. Guarantee: every input counted broken has an ``x_adv`` in the threat ball that the defended
    model misclassified (on the draw that checked it), or is a clean error.

    ``engine`` or ``run_dir`` runs both evaluations through the shard runner (:mod:`bastion.engine`:
    shards of ``shard_size`` inputs, kept under ``run_dir``/naive and ``run_dir``/adaptive for resuming;
    on Ray ``model`` is a :class:`~bastion.engine.ModelRef`). Only deterministic transforms shard: a
    randomised one draws from the defended model's single generator, so its draws would follow the shards.
    """
    chain = as_transforms(transforms)
    randomized = any(t.randomized for t in chain)
    eot = (20 if randomized else 1) if eot_samples is None else eot_samples
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise DefenseError(f"eot_samples must be an integer >= 1, got {eot_samples!r}")
    if engine is not None or run_dir is not None:
        return _sharded(model, x, y, threat, chain, preset, eot, seed, batch_size, progress, engine,
                        run_dir, shard_size)  # fmt: skip
    clf = as_classifier(model, bounds=threat.bounds)
    stages = preset_attacks(preset, eot_samples=eot)
    naive = evaluate(
        DefendedClassifier(clf, chain, mode="naive", seed=seed),
        x,
        y,
        threat,
        preset,
        seed=seed,
        batch_size=batch_size,
        progress=_prefixed(progress, "naive"),
    )
    adaptive = evaluate(
        DefendedClassifier(clf, chain, mode="bpda", seed=seed),
        x,
        y,
        threat,
        attacks=stages,
        seed=seed,
        batch_size=batch_size,
        progress=_prefixed(progress, "adaptive"),
    )
    return _combine(naive, adaptive, chain, preset, eot)


def _combine(
    naive: EvaluationResult, adaptive: EvaluationResult, chain: Sequence[Transform], preset: str, eot: int
) -> DefenseEvaluation:
    spec = ",".join(t.spec() for t in chain)
    extra = {"defense": spec, "mode": "bpda", "eot_samples": eot}
    return DefenseEvaluation(
        naive=replace(naive, extra={**naive.extra, "defense": spec, "mode": "naive", "eot_samples": 1}),
        adaptive=_union(replace(adaptive, preset=preset, extra={**adaptive.extra, **extra}), naive),
        defense=spec,
        eot_samples=eot,
    )


def _sharded(
    model: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, chain: Sequence[Transform],
    preset: str, eot: int, seed: int, batch_size: int, progress: Progress | None, engine: Any,
    run_dir: str | Path | None, shard_size: int,
) -> DefenseEvaluation:  # fmt: skip
    """Both evaluations on the shard runner, each worker wrapping its own copy of the model."""
    from bastion.engine import ModelRef, evaluate_sharded

    if not isinstance(model, ModelRef):  # a live model (local engine): the threat's bounds, as one pass
        model = as_classifier(model, bounds=threat.bounds)
    spec = ",".join(t.spec() for t in chain)
    runs = {}
    for mode, name, samples in (("naive", "naive", None), ("bpda", "adaptive", eot)):
        where = None if run_dir is None else Path(run_dir) / name
        tell = None if progress is None else (lambda d, t, n=name: progress(n, d, t))
        runs[name] = evaluate_sharded(
            model, x, y, threat, preset, seed=seed, batch_size=batch_size, shard_size=shard_size,
            engine=engine, run_dir=where, progress=tell, defense=spec, defense_mode=mode, eot_samples=samples,
        )  # fmt: skip
    return _combine(runs["naive"], runs["adaptive"], chain, preset, eot)


def _union(adaptive: EvaluationResult, naive: EvaluationResult) -> EvaluationResult:
    """``adaptive`` with the inputs only ``naive`` broke marked broken, as a last ``naive-union`` stage."""
    extra = adaptive.robust & ~naive.robust
    robust = adaptive.robust & naive.robust
    x_adv, predictions = adaptive.x_adv.clone(), adaptive.predictions.clone()
    x_adv[extra] = naive.x_adv[extra]
    predictions[extra] = naive.predictions[extra]
    stage = StageResult(
        attack="naive-union",
        params={"source": "inputs the naive evaluation broke"},
        robust_accuracy=float(robust.float().mean()),
        n_attacked=int(adaptive.robust.sum()),
        n_fooled=int(extra.sum()),
        queries=0,
        gradient_evals=0,
        seconds=0.0,
    )
    return replace(
        adaptive,
        robust=robust,
        robust_accuracy=stage.robust_accuracy,
        x_adv=x_adv,
        predictions=predictions,
        stages=[*adaptive.stages, stage],
    )


def _prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    report = progress
    return None if report is None else lambda stage, done, total: report(f"{prefix} {stage}", done, total)
