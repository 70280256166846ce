"""The tabular cascade through the shard runner: :class:`bastion.tabular.TabularCascade` on fixed shards.

Each shard runs the cascade (constrained PGD where the model has gradients, then the genetic search) on
its records with the run's seed and the records' indices as their ids: every record draws from its own
stream (:mod:`bastion.rng`), and MoEvA (on a model without an encoder) takes the spread of all the
records, as one pass does, never the shard's, so shards and workers give the one-pass records row for
row. The threat travels as
its settings and the schema's JSON; the model as its spec and hashed file (:class:`TabularModelRef`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bastion.engine._jobs import data_digest, model_key, require_artifact, worker_model
from bastion.engine.engines import Engine, get_engine
from bastion.engine.rundir import ShardOutput
from bastion.engine.runner import run_shards
from bastion.engine.shards import RNG_SCHEME, Shard, make_shards

if TYPE_CHECKING:
    from bastion.tabular import TabularThreatModel
    from bastion.tabular.attacks import TabularCascadeResult

__all__ = ["TabularEvaluateJob", "evaluate_tabular_sharded"]

_TENSORS = ("x_adv", "success", "valid", "predictions", "changed", "cost")


def threat_settings(threat: TabularThreatModel) -> dict[str, Any]:
    """The threat as JSON values a worker rebuilds it from (:func:`threat_from_settings`)."""
    return {
        "schema": threat.schema.to_dict(),
        "mutable": None if threat.mutable is None else list(threat.mutable),
        "max_change": dict(threat.max_change),
        "budget": threat.budget,
        "relations": threat.relations,
        "tolerance": threat.tolerance,
    }


def threat_from_settings(settings: dict[str, Any]) -> TabularThreatModel:
    from bastion.tabular import TabularSchema, TabularThreatModel

    return TabularThreatModel(
        TabularSchema.from_dict(settings["schema"]), mutable=settings["mutable"],
        max_change=settings["max_change"], budget=settings["budget"], relations=settings["relations"],
        tolerance=settings["tolerance"],
    )  # fmt: skip


@dataclass(frozen=True)
class TabularEvaluateJob:
    """The model (a :class:`~bastion.engine.TabularModelRef`, or a live one on the local engine), the
    threat's settings (JSON), the cascade's stages (names and hyperparameters) and the seed."""

    model: Any
    threat_json: str
    stages: tuple[tuple[str, str], ...]
    seed: int
    data_sha256: str
    feature_scale: tuple[float, ...] | None = None  # the spread of all the records (a function of the data)

    def key(self, shard_size: int) -> dict[str, Any]:
        return {
            "task": "evaluate-tabular",
            "model": model_key(self.model),
            "threat": json.loads(self.threat_json),
            "stages": [list(st) for st in self.stages],
            "seed": self.seed,
            "data_sha256": self.data_sha256,
            "shard_size": shard_size,
            "rng": RNG_SCHEME,
        }


def _cascade(stages: tuple[tuple[str, str], ...]) -> Any:
    from bastion.tabular import CPGD, MoEvA, TabularCascade

    kinds = {"cpgd": CPGD, "moeva": MoEvA}
    return TabularCascade(tuple(kinds[name](**json.loads(params)) for name, params in stages))


def evaluate_tabular_shard(
    job: TabularEvaluateJob, shard: Shard, payload: Any, batch_size: int
) -> ShardOutput:
    """The task: the cascade on one shard's records."""
    del batch_size
    x, y = payload
    clf, _ = worker_model(job.model)
    threat = threat_from_settings(json.loads(job.threat_json))
    ids = torch.arange(shard.start, shard.stop)
    cascade = _cascade(job.stages)
    out = cascade(clf, x, y, threat, seed=job.seed, example_ids=ids, feature_scale=job.feature_scale)
    res = out.result
    meta = {"queries": res.queries, "gradient_evals": res.gradient_evals, "seconds": res.seconds,
            "stages": [s.to_dict() for s in out.stages]}  # fmt: skip
    return ShardOutput({k: getattr(res, k).cpu() for k in _TENSORS}, meta)


def evaluate_tabular_sharded(
    cascade: Any,
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: TabularThreatModel,
    *,
    seed: int = 0,
    shard_size: int = 500,
    engine: Engine | str | None = None,
    run_dir: str | Path | None = None,
    progress: Any = None,
) -> TabularCascadeResult:
    """``cascade(model, x, y, threat, seed=seed)`` (a :class:`~bastion.tabular.TabularCascade` of CPGD
    and MoEvA stages) shard by shard on ``engine``, kept in ``run_dir`` for resuming. ``model``: a
    :class:`~bastion.engine.TabularModelRef` (any engine) or a live tabular classifier (local engine
    only). The result equals one pass record for record; its stage seconds add up the shards'."""
    from bastion.tabular.attacks import CascadeStage, TabularCascadeResult
    from bastion.tabular.attacks.cascade import records_spread
    from bastion.tabular.results import TabularAttackResult

    chosen = get_engine(engine)
    require_artifact(model, chosen, what="a live tabular model")
    stages = tuple((s.name, json.dumps(s.params(), sort_keys=True)) for s in cascade.stages)
    x = x.detach().to(torch.float64)
    y = torch.as_tensor(y).long()
    spread = records_spread(x)  # as one pass takes it
    job = TabularEvaluateJob(model, json.dumps(threat_settings(threat), sort_keys=True), stages, int(seed),
                             data_digest(x, y), spread)  # fmt: skip
    t0 = time.perf_counter()
    outcome = run_shards(
        evaluate_tabular_shard, job, make_shards(len(x), shard_size),
        lambda s: (x[s.start : s.stop].clone(), y[s.start : s.stop].clone()), job_key=job.key(shard_size),
        batch_size=1, engine=chosen, run_dir=run_dir, progress=progress,
    )  # fmt: skip
    cat = {k: torch.cat([o.tensors[k] for o in outcome.outputs]) for k in _TENSORS}
    metas = [o.meta for o in outcome.outputs]
    merged_stages = []
    for k, first in enumerate(metas[0]["stages"]):
        rows = [m["stages"][k] for m in metas]
        ran = [r for r in rows if r["skipped"] is None]
        merged_stages.append(CascadeStage(
            first["attack"], sum(r["attacked"] for r in rows), sum(r["successes"] for r in rows),
            sum(r["queries"] for r in rows), sum(r["gradient_evals"] for r in rows),
            sum(r["seconds"] for r in rows), skipped=None if ran else first["skipped"],
            already_wrong=sum(r["already_wrong"] for r in rows),
        ))  # fmt: skip
    result = TabularAttackResult(
        x=x, y=y, **{k: cat[k] for k in _TENSORS}, queries=sum(m["queries"] for m in metas),
        gradient_evals=sum(m["gradient_evals"] for m in metas), seconds=time.perf_counter() - t0,
        attack=cascade.name, schema=threat.schema,
        params={**cascade.params(), "engine": {**outcome.to_dict(), "shard_size": shard_size}},
        seed=int(seed),
    )  # fmt: skip
    return TabularCascadeResult(result, tuple(merged_stages))
