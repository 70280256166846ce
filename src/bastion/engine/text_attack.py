"""One text attack through the shard runner: ``bastion attack`` on a text model and the text audit's rows.

Each shard builds the attack from its name, preset and query budget (hyperparameters only travel) and
attacks its texts with the run's seed and the texts' indices as their ids, so a text draws what it would
draw in one pass; the per-text outcomes are concatenated in shard order into one
:class:`~bastion.text.attacks.result.TextAttackResult`, equal to the one-pass result text for text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bastion.engine._jobs import model_key, require_artifact, worker_model
from bastion.engine.engines import Engine, get_engine
from bastion.engine.rundir import ShardOutput
from bastion.engine.runner import run_shards
from bastion.engine.shards import Shard, make_shards
from bastion.engine.text_evaluation import TEXT_RNG

if TYPE_CHECKING:
    from bastion.text.attacks.result import TextAttackResult

__all__ = ["TextAttackJob", "attack_text_sharded"]

_TENSORS = (
    "clean_predictions",
    "predictions",
    "success",
    "valid",
    "queries",
    "words_changed",
    "chars_changed",
)


@dataclass(frozen=True)
class TextAttackJob:
    """The text model (a :class:`~bastion.engine.TextModelRef`, or a live one on the local engine), the
    attack by name, its preset and query budget, and the seed."""

    model: Any
    attack: str
    preset: str
    max_queries: int | None
    seed: int
    data_sha256: str

    def key(self, shard_size: int) -> dict[str, Any]:
        return {
            "task": "attack-text",
            "model": model_key(self.model),
            "attack": self.attack,
            "preset": self.preset,
            "max_queries": self.max_queries,
            "seed": self.seed,
            "data_sha256": self.data_sha256,
            "shard_size": shard_size,
            "rng": TEXT_RNG,
        }


def attack_text_shard(job: TextAttackJob, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    """The task: one attack on one shard's texts."""
    from bastion.text.registry import make_text_attack

    del batch_size  # texts are attacked one at a time
    texts, labels = payload
    clf, _ = worker_model(job.model)
    attack, threat = make_text_attack(job.attack, job.preset, max_queries=job.max_queries)
    res = attack(clf, texts, labels, threat, seed=job.seed, example_ids=range(shard.start, shard.stop))
    meta = {"adversarials": list(res.adversarials), "violations": [list(v) for v in res.violations],
            "seconds": res.seconds}  # fmt: skip
    return ShardOutput({k: getattr(res, k).cpu() for k in _TENSORS}, meta)


def attack_text_sharded(
    name: str,
    preset: str,
    model: Any,
    texts: Sequence[str],
    labels: Sequence[int] | torch.Tensor,
    *,
    max_queries: int | None = None,
    seed: int = 0,
    shard_size: int = 50,
    engine: Engine | str | None = None,
    run_dir: str | Path | None = None,
    progress: Any = None,
) -> TextAttackResult:
    """The text attack ``name`` (:data:`bastion.text.registry.TEXT_ATTACKS`) at ``preset`` on ``texts``,
    shard by shard on ``engine``, kept in ``run_dir`` for resuming; equal to one call of the attack text
    for text (its ``seconds`` add up the shards'). ``model``: a :class:`~bastion.engine.TextModelRef`
    (any engine) or a live text classifier (the local engine only). A missing offline resource fails
    here, before any shard."""
    from bastion.text.attacks.result import TextAttackResult
    from bastion.text.data import texts_sha256
    from bastion.text.evaluation import labelled_texts
    from bastion.text.registry import make_text_attack

    chosen = get_engine(engine)
    require_artifact(model, chosen, what="a live text model")
    attack, threat = make_text_attack(name, preset, max_queries=max_queries)
    attack.resources.require(threat)
    items, y = labelled_texts(texts, labels)
    job = TextAttackJob(model, name, preset, max_queries, int(seed), texts_sha256(items, y))
    outcome = run_shards(
        attack_text_shard, job, make_shards(len(items), shard_size),
        lambda s: (items[s.start : s.stop], y[s.start : s.stop].clone()), job_key=job.key(shard_size),
        batch_size=1, engine=chosen, run_dir=run_dir, progress=progress,
    )  # fmt: skip
    cat = {k: torch.cat([o.tensors[k] for o in outcome.outputs]) for k in _TENSORS}
    metas = [o.meta for o in outcome.outputs]
    return TextAttackResult(
        originals=tuple(items),
        adversarials=tuple(a for m in metas for a in m["adversarials"]),
        labels=y,
        clean_predictions=cat["clean_predictions"],
        predictions=cat["predictions"],
        success=cat["success"].bool(),
        valid=cat["valid"].bool(),
        violations=tuple(tuple(v) for m in metas for v in m["violations"]),
        queries=cat["queries"],
        words_changed=cat["words_changed"],
        chars_changed=cat["chars_changed"],
        attack=attack.name,
        threat=threat,
        params={**attack.params(), "engine": {**outcome.to_dict(), "shard_size": shard_size}},
        seed=int(seed),
        seconds=sum(m["seconds"] for m in metas),  # the attack's own time, summed over the shards
    )
