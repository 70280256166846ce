"""Certification through the shard runner: randomized smoothing (or IBP) shard by shard, resumable.

Each shard certifies its inputs with the run's seed, each input drawing its noise as its index (so the
shard size does not change it); the per-input predictions, radii and abstentions are concatenated in
shard order. Randomized smoothing's
guarantee is per input (each holds with probability 1 - alpha over its own noise draws), so certifying in
shards certifies exactly as much as one pass; with one shard the noise is the unsharded run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bastion.engine._jobs import data_digest, model_key, require_artifact, threat_key, worker_model
from bastion.engine.engines import Engine, get_engine
from bastion.engine.rundir import ShardOutput
from bastion.engine.runner import run_shards
from bastion.engine.shards import RNG_SCHEME, Shard, make_shards
from bastion.results import CertificationResult
from bastion.threat import ThreatModel

__all__ = ["CertifyJob", "certify_sharded"]


@dataclass(frozen=True)
class CertifyJob:
    """The model (a :class:`ModelRef`, or a live classifier on the local engine), the certifier
    (bastion's own object: hyperparameters only), the threat (IBP) and the run's seed."""

    model: Any
    certifier: Any
    threat: ThreatModel | None
    seed: int
    data_sha256: str

    def key(self, shard_size: int) -> dict[str, Any]:
        threat = None if self.threat is None else threat_key(self.threat)
        return {"task": "certify", "model": model_key(self.model), "certifier": type(self.certifier).__name__,
                "params": self.certifier.params(), "threat": threat, "seed": self.seed,
                "data_sha256": self.data_sha256, "shard_size": shard_size, "rng": RNG_SCHEME}  # fmt: skip


def certify_shard(job: CertifyJob, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    """The task: certify one shard's inputs."""
    clf, device = worker_model(job.model)
    x = payload.to(device)
    if job.threat is None:
        res = job.certifier.certify(clf, x, seed=job.seed, example_ids=torch.arange(shard.start, shard.stop))
    else:
        res = job.certifier.certify(clf, x, job.threat)
    tensors = {
        "prediction": res.prediction.cpu(),
        "radius": res.radius.cpu(),
        "abstained": res.abstained.cpu(),
    }
    return ShardOutput(tensors, {"norm": res.norm, "method": res.method, "params": res.params,
                                 "seconds": res.seconds})  # fmt: skip


def certify_sharded(
    certifier: Any,
    model: Any,
    x: torch.Tensor,
    threat: ThreatModel | None = None,
    *,
    seed: int = 0,
    shard_size: int = 500,
    engine: Engine | str | None = None,
    run_dir: str | Path | None = None,
    progress: Any = None,
) -> CertificationResult:
    """``certifier.certify`` (a :class:`~bastion.certify.RandomizedSmoothing`, or an
    :class:`~bastion.certify.IntervalBoundPropagation` with ``threat``) over ``x`` in shards on ``engine``,
    kept in ``run_dir``. ``model``: a :class:`ModelRef`, or a live classifier on the local engine."""
    chosen = get_engine(engine)
    require_artifact(model, chosen)
    x = x.detach()
    shards = make_shards(int(x.shape[0]), shard_size)
    job = CertifyJob(model, certifier, threat, int(seed), data_digest(x))
    outcome = run_shards(
        certify_shard, job, shards, lambda s: x[s.start : s.stop].clone(), job_key=job.key(shard_size),
        batch_size=getattr(certifier, "batch_size", 1), engine=chosen, run_dir=run_dir, progress=progress,
    )  # fmt: skip
    first = outcome.outputs[0].meta
    return CertificationResult(
        prediction=torch.cat([o.tensors["prediction"] for o in outcome.outputs]),
        radius=torch.cat([o.tensors["radius"] for o in outcome.outputs]),
        abstained=torch.cat([o.tensors["abstained"] for o in outcome.outputs]).bool(),
        norm=first["norm"],
        method=first["method"],
        seconds=outcome.seconds,
        params={**first["params"], "engine": {**outcome.to_dict(), "shard_size": shard_size}},
    )
