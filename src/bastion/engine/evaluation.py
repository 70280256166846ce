"""``evaluate`` through the shard runner: the cascade on fixed shards, on any engine, resumable.

Each shard runs :func:`bastion.evaluation.evaluate` on its examples with the run's seed and the examples'
indices as their ids, so every random draw is keyed by (seed, stage, example) and no shard size, batch
size or worker count changes it (:mod:`bastion.rng`); the per-example outcomes (clean correct, robust,
prediction, adversarial) are concatenated in shard order and the per-stage counts added up, so the merged
result is exact: stage ``k``'s robust accuracy is (clean correct - inputs fooled by stages 0..k) / N.
Focused stages pick the survivors nearest the boundary within their shard, so with focused stages the
shard size
stays part of the run. With one shard (``shard_size >= N``) the result is that of an unsharded
:func:`~bastion.evaluation.evaluate` with the same seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bastion.engine._jobs import data_digest, model_key, require_artifact, threat_key, worker_model
from bastion.engine.engines import Engine, get_engine
from bastion.engine.rundir import ShardOutput
from bastion.engine.runner import run_shards
from bastion.engine.shards import RNG_SCHEME, Shard, make_shards
from bastion.errors import BastionError
from bastion.threat import ThreatModel

if TYPE_CHECKING:
    from bastion.evaluation import EvaluationResult

__all__ = ["EvaluateJob", "evaluate_sharded"]


@dataclass(frozen=True)
class EvaluateJob:
    """What every shard of an evaluation needs besides its examples: the model (a :class:`ModelRef`, or
    a live classifier on the local engine), the threat, the preset and the run's seed."""

    model: Any
    threat: ThreatModel
    preset: str
    seed: int
    data_sha256: str
    defense: str | None = None
    defense_mode: str = "bpda"
    eot_samples: int | None = None

    def key(self, shard_size: int) -> dict[str, Any]:
        """The job as JSON values: its digest names the run in a run directory."""
        key = {
            "task": "evaluate",
            "model": model_key(self.model),
            "threat": threat_key(self.threat),
            "preset": self.preset,
            "seed": self.seed,
            "data_sha256": self.data_sha256,
            "shard_size": shard_size,
            "rng": RNG_SCHEME,
        }
        if self.defense is not None:  # absent otherwise: undefended runs keep their identity
            key["defense"] = {"spec": self.defense, "mode": self.defense_mode, "eot": self.eot_samples}
        return key


def evaluate_shard(job: EvaluateJob, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    """The task: the cascade on one shard's ``(x, y)``."""
    from bastion.evaluation import evaluate, preset_attacks

    x, y = payload
    clf, device = worker_model(job.model)
    attacks = None
    if job.defense is not None:
        from bastion.defenses.defended import DefendedClassifier

        clf = DefendedClassifier(clf, job.defense, mode=job.defense_mode, seed=job.seed)  # type: ignore[arg-type]
        if job.eot_samples is not None:
            attacks = preset_attacks(job.preset, eot_samples=job.eot_samples)
    ids = torch.arange(shard.start, shard.stop)
    res = evaluate(clf, x.to(device), y.to(device), job.threat, job.preset, attacks=attacks, seed=job.seed,
                   batch_size=batch_size, example_ids=ids)  # fmt: skip
    meta = {"n_clean_correct": int(res.clean_correct.sum()),
            "stages": [{"attack": s.attack, "params": s.params, "n_attacked": s.n_attacked,
                        "n_fooled": s.n_fooled, "queries": s.queries, "gradient_evals": s.gradient_evals,
                        "seconds": s.seconds} for s in res.stages]}  # fmt: skip
    tensors = {"clean_correct": res.clean_correct.cpu(), "robust": res.robust.cpu(),
               "predictions": res.predictions.cpu(), "x_adv": res.x_adv.cpu()}  # fmt: skip
    return ShardOutput(tensors, meta)


def evaluate_sharded(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    preset: str = "standard",
    *,
    seed: int = 0,
    batch_size: int = 500,
    shard_size: int = 500,
    engine: Engine | str | None = None,
    run_dir: str | Path | None = None,
    progress: Any = None,
    defense: str | None = None,
    defense_mode: str = "bpda",
    eot_samples: int | None = None,
) -> EvaluationResult:
    """Robust accuracy as :func:`bastion.evaluate`, run shard by shard on ``engine`` (``local``, ``ray`` or
    an engine object) and kept in ``run_dir`` for resuming. ``model``: a :class:`ModelRef` (any engine)
    or a live classifier (the local engine only: other engines load models from artifacts, never from
    pickled objects). Returns an :class:`~bastion.evaluation.EvaluationResult` whose ``extra`` holds the
    run's bookkeeping (``engine``: name, workers, shards, resumed, redone).

    ``defense`` (a deterministic transform spec such as ``"jpeg:75,bits:4"``) puts the model behind
    :class:`~bastion.defenses.DefendedClassifier` on each worker in ``defense_mode``, its gradient attacks
    averaging ``eot_samples`` draws (see :func:`bastion.defenses.evaluate_defense`, which calls this).
    Randomised transforms draw from one generator per model, not per example, so they are refused here."""
    from bastion.evaluation import EvaluationResult, StageResult, preset_attacks

    chosen = get_engine(engine)
    require_artifact(model, chosen)
    preset_attacks(preset)  # an unknown preset fails before any work
    if defense is not None:
        _check_shardable(defense)
    x, y = x.detach(), torch.as_tensor(y).long()
    if x.shape[0] != y.shape[0]:
        raise BastionError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    n = int(x.shape[0])
    shards = make_shards(n, shard_size)
    job = EvaluateJob(model, threat, preset, int(seed), data_digest(x, y), defense, defense_mode, eot_samples)
    t0 = time.perf_counter()
    outcome = run_shards(
        evaluate_shard, job, shards, lambda s: (x[s.start : s.stop].clone(), y[s.start : s.stop].clone()),
        job_key=job.key(shard_size), batch_size=batch_size, engine=chosen, run_dir=run_dir,
        progress=progress,
    )  # fmt: skip
    cat = {k: torch.cat([o.tensors[k] for o in outcome.outputs]) for k in outcome.outputs[0].tensors}
    clean_correct, robust = cat["clean_correct"].bool(), cat["robust"].bool()
    standing = sum(o.meta["n_clean_correct"] for o in outcome.outputs)
    stages = []
    for k, first in enumerate(outcome.outputs[0].meta["stages"]):
        rows = [o.meta["stages"][k] for o in outcome.outputs]
        fooled = sum(r["n_fooled"] for r in rows)
        standing -= fooled
        stages.append(StageResult(
            attack=first["attack"], params=first["params"], robust_accuracy=standing / n,
            n_attacked=sum(r["n_attacked"] for r in rows), n_fooled=fooled,
            queries=sum(r["queries"] for r in rows), gradient_evals=sum(r["gradient_evals"] for r in rows),
            seconds=sum(r["seconds"] for r in rows),
        ))  # fmt: skip
    if standing != int(robust.sum()):
        raise BastionError(
            f"the shards' stage counts ({standing} robust) disagree with their examples "
            f"({int(robust.sum())}); a shard file is inconsistent: rerun without --resume"
        )
    return EvaluationResult(
        threat=threat, preset=preset, clean_accuracy=float(clean_correct.float().mean()),
        robust_accuracy=float(robust.float().mean()), clean_correct=clean_correct, robust=robust,
        x_adv=cat["x_adv"], predictions=cat["predictions"], stages=stages, seconds=time.perf_counter() - t0,
        seed=int(seed), extra={"engine": {**outcome.to_dict(), "shard_size": shard_size}},
    )  # fmt: skip


def _check_shardable(spec: str) -> None:
    from bastion.defenses import DefenseError, parse_defense

    random = [t.spec() for t in parse_defense(spec) if t.randomized]
    if random:
        raise DefenseError(
            f"{', '.join(random)} draws from one generator per model, so its draws would depend on the "
            "shards; evaluate a randomised defense on the local engine without --resume"
        )
