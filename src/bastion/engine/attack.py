"""One attack through the shard runner: the registry attack rebuilt on each worker from its name and
hyperparameters, run on a shard in batches, resumable.

Every batch runs with the run's seed and its examples' indices as ids, so each input's random draws are
its own (:mod:`bastion.rng`) and the result equals an unsharded run's whatever the shard or batch size.
The attack's own final ``__call__`` projects, re-verifies and counts every batch; the merge only
concatenates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bastion.engine._jobs import data_digest, model_key, require_artifact, threat_key, worker_model
from bastion.engine.engines import Engine, get_engine
from bastion.engine.rundir import ShardOutput
from bastion.engine.runner import RunOutcome, run_shards
from bastion.engine.shards import RNG_SCHEME, Shard, make_shards
from bastion.threat import ThreatModel

__all__ = ["AttackJob", "ShardedAttack", "attack_sharded"]


@dataclass(frozen=True)
class AttackJob:
    """The model, the attack by registry ``name`` with its hyperparameters, the threat and the seed."""

    model: Any
    name: str
    kwargs: dict[str, Any]
    threat: ThreatModel
    seed: int
    data_sha256: str

    def key(self, shard_size: int) -> dict[str, Any]:
        return {"task": "attack", "model": model_key(self.model), "attack": self.name, "kwargs": self.kwargs,
                "threat": threat_key(self.threat),
                "seed": self.seed, "data_sha256": self.data_sha256, "shard_size": shard_size,
                "rng": RNG_SCHEME}  # fmt: skip


def attack_shard(job: AttackJob, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    """The task: the attack on one shard's ``(x, y, targets)``, ``batch_size`` inputs at a time."""
    from bastion.attacks import get

    x, y, targets = payload
    clf, device = worker_model(job.model)
    attack = get(job.name, **job.kwargs)
    parts, queries, grads = [], 0, 0
    for lo in range(0, x.shape[0], batch_size):
        sl = slice(lo, lo + batch_size)
        t = None if targets is None else targets[sl].to(device)
        ids = torch.arange(shard.start + lo, shard.start + min(lo + batch_size, x.shape[0]))
        res = attack(clf, x[sl].to(device), y[sl].to(device), job.threat, targets=t, seed=job.seed,
                     example_ids=ids)  # fmt: skip
        parts.append(res)
        queries += res.queries
        grads += res.gradient_evals
    tensors = {k: torch.cat([getattr(p, k).detach().cpu() for p in parts])
               for k in ("x_adv", "success", "distance", "predictions")}  # fmt: skip
    return ShardOutput(tensors, {"queries": queries, "gradient_evals": grads})


@dataclass(frozen=True)
class ShardedAttack:
    """The merged outcome: per input ``x_adv``, ``success``, ``distance``, ``predictions``; summed
    ``queries`` and ``gradient_evals``; ``engine``: the run's bookkeeping."""

    x_adv: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    predictions: torch.Tensor
    queries: int
    gradient_evals: int
    seconds: float
    engine: dict[str, Any] = field(default_factory=dict)


def attack_sharded(
    name: str,
    kwargs: dict[str, Any],
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    targets: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = 256,
    shard_size: int = 500,
    engine: Engine | str | None = None,
    run_dir: str | Path | None = None,
    progress: Any = None,
) -> ShardedAttack:
    """The registry attack ``name`` (built with ``kwargs``) over ``x``, ``y`` in shards on ``engine``."""
    from bastion.attacks import get

    get(name, **kwargs)  # an unknown name or hyperparameter fails here, before any work
    chosen = get_engine(engine)
    require_artifact(model, chosen)
    x, y = x.detach(), y.detach()
    job = AttackJob(model, name, dict(kwargs), threat, int(seed),
                    data_digest(x, y, *(() if targets is None else (targets,))))  # fmt: skip

    def payload(s: Shard) -> Any:
        t = None if targets is None else targets[s.start : s.stop].clone()
        return x[s.start : s.stop].clone(), y[s.start : s.stop].clone(), t

    outcome: RunOutcome = run_shards(
        attack_shard, job, make_shards(int(x.shape[0]), shard_size), payload, job_key=job.key(shard_size),
        batch_size=batch_size, engine=chosen, run_dir=run_dir, progress=progress,
    )  # fmt: skip
    cat = {k: torch.cat([o.tensors[k] for o in outcome.outputs]) for k in outcome.outputs[0].tensors}
    return ShardedAttack(
        x_adv=cat["x_adv"], success=cat["success"].bool(), distance=cat["distance"],
        predictions=cat["predictions"], queries=sum(o.meta["queries"] for o in outcome.outputs),
        gradient_evals=sum(o.meta["gradient_evals"] for o in outcome.outputs), seconds=outcome.seconds,
        engine={**outcome.to_dict(), "shard_size": shard_size},
    )  # fmt: skip
