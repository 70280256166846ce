"""The audit's attack batches on the shard runner.

The audit runs every attack as ``attack(model, x[part], y[part], threat, seed=s)`` over consecutive
batches of the inputs it attacks (:func:`bastion.audit.probes.run_attack`), one seed for all batches, so
the batches are independent of each other. :class:`AttackBatches` sends each batch as one shard to an
engine: the result is the local loop's, batch for batch, on any engine and any number of workers (with
equal torch threads). With a run directory every attack keeps its finished batches in a numbered
subdirectory, so a killed audit, run again, reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bastion.engine._jobs import data_digest, model_key, threat_key, worker_model
from bastion.engine.engines import Engine, get_engine
from bastion.engine.model_ref import ModelRef
from bastion.engine.rundir import ShardOutput
from bastion.engine.runner import run_shards
from bastion.engine.shards import RNG_SCHEME, Shard, make_shards
from bastion.threat import ThreatModel

__all__ = ["AttackBatches"]


@dataclass(frozen=True)
class _BatchJob:
    model: Any
    attack: Any  # a bastion Attack: its class and hyperparameters (no user code)
    threat: ThreatModel
    seed: int


def _batch_task(job: _BatchJob, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    clf, device = worker_model(job.model)
    x, y, ids = payload
    res = job.attack(clf, x.to(device), y.to(device), job.threat, seed=job.seed, example_ids=ids)
    return ShardOutput({"success": res.success.cpu(), "x_adv": res.x_adv.detach().cpu()},
                       {"queries": res.queries, "gradient_evals": res.gradient_evals})  # fmt: skip


class AttackBatches:
    """``AttackBatches(engine, live, ref=None, run_dir=None)``: runs attacks on ``live`` (the audited
    classifier) batch by batch on ``engine``; workers other than local load ``ref`` (a :class:`ModelRef`).
    """

    def __init__(self, engine: Engine | str | None, live: Any, ref: ModelRef | None = None,
                 run_dir: str | Path | None = None) -> None:  # fmt: skip
        self.engine = get_engine(engine)
        self.live, self.ref = live, ref
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.calls = 0
        self.resumed = 0

    def handles(self, model: Any) -> bool:
        """True for the audited model itself (a defended view or a surrogate runs locally)."""
        return model is self.live

    def run(self, name: str, attack: Any, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, seed: int,
            batch_size: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:  # fmt: skip
        """``attack`` on ``x`` (N, ...) in batches, input ``i`` drawing as example ``ids[i]``: (success (N,),
        x_adv, queries, gradient evals)."""
        ids = ids.detach().cpu().to(torch.int64)
        self.calls += 1
        model = self.live if self.engine.name == "local" or self.ref is None else self.ref
        job = _BatchJob(model, attack, threat, int(seed))
        key = {
            "task": "audit-attack",
            "call": self.calls,
            "attack": type(attack).__name__,
            "params": attack.params(),
            "seed": int(seed),
            "batch_size": batch_size,
            "model": model_key(self.ref if self.ref is not None else self.live),
            "threat": threat_key(threat),
            "data_sha256": data_digest(x, y, ids),
            "rng": RNG_SCHEME,
        }
        where = None if self.run_dir is None else self.run_dir / f"{self.calls:04d}-{name.replace(' ', '_')}"
        outcome = run_shards(
            _batch_task, job, make_shards(int(x.shape[0]), batch_size),
            lambda s: (x[s.start : s.stop].detach().cpu().clone(), y[s.start : s.stop].cpu().clone(),
                       ids[s.start : s.stop].clone()),
            job_key=key, batch_size=batch_size, engine=self.engine, run_dir=where,
        )  # fmt: skip
        self.resumed += len(outcome.resumed)
        success = torch.cat([o.tensors["success"] for o in outcome.outputs]).bool().to(x.device)
        x_adv = torch.cat([o.tensors["x_adv"] for o in outcome.outputs]).to(x.device)
        queries = sum(o.meta["queries"] for o in outcome.outputs)
        grads = sum(o.meta["gradient_evals"] for o in outcome.outputs)
        return success, x_adv, queries, grads
