"""The text cascade through the shard runner: :func:`bastion.text.evaluate_text` on fixed shards of texts.

Each shard runs the whole cascade on its texts with the run's seed and the texts' indices as their ids, so
every text draws what it would draw in one pass (:class:`~bastion.text.attacks.base.TextAttack` keys its
generator by id) and no shard size or worker count changes a text's outcome. Stages are merged exactly:
each shard's attacked, fooled, queries and invalid counts add up, and stage ``k``'s accuracy under attack is
(clean correct - texts fooled by stages 0..k) / N, as in the unsharded cascade.
"""

from __future__ import annotations

import time
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
from bastion.errors import BastionError

if TYPE_CHECKING:
    from bastion.text.evaluation import TextEvaluation

__all__ = ["TextEvaluateJob", "evaluate_text_sharded"]

TEXT_RNG = "text-per-id/1"
"""How text attacks key their draws (seed * 1,000,003 + the text's id): part of every run's identity."""


@dataclass(frozen=True)
class TextEvaluateJob:
    """The text model (a :class:`~bastion.engine.TextModelRef`, or a live one on the local engine), the
    preset, the stages, the query budget and the seed."""

    model: Any
    preset: str
    attacks: tuple[str, ...]
    max_queries: int | None
    seed: int
    data_sha256: str

    def key(self, shard_size: int) -> dict[str, Any]:
        return {"task": "evaluate-text", "model": model_key(self.model), "preset": self.preset,
                "attacks": list(self.attacks), "max_queries": self.max_queries, "seed": self.seed,
                "data_sha256": self.data_sha256, "shard_size": shard_size, "rng": TEXT_RNG}  # fmt: skip


def _share(count: int, n: int) -> float:
    """``count / n`` as one pass computes it (the mean of a float32 mask), so the numbers match exactly."""
    return float(torch.tensor(float(count), dtype=torch.float32) / n)


def evaluate_text_shard(job: TextEvaluateJob, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    """The task: the cascade on one shard's texts."""
    from bastion.text.evaluation import evaluate_text

    del batch_size  # texts are attacked one at a time
    texts, labels = payload
    clf, _ = worker_model(job.model)
    res = evaluate_text(clf, texts, labels, job.preset, attacks=job.attacks, seed=job.seed,
                        max_queries=job.max_queries, example_ids=range(shard.start, shard.stop))  # fmt: skip
    correct = round(res.clean_accuracy * res.n_samples)
    meta = {"n_correct": correct, "adversarials": list(res.adversarials), "fooled_by": list(res.fooled_by),
            "stages": [{"attack": s.attack, "status": s.status, "attacked": s.attacked, "fooled": s.fooled,
                        "queries": s.queries, "seconds": s.seconds, "invalid": s.invalid, "reason": s.reason}
                       for s in res.stages]}  # fmt: skip
    return ShardOutput({"fooled": res.fooled.cpu()}, meta)


def evaluate_text_sharded(
    model: Any,
    texts: Sequence[str],
    labels: Sequence[int] | torch.Tensor,
    preset: str = "strict",
    *,
    attacks: Sequence[str] | None = None,
    seed: int = 0,
    max_queries: int | None = None,
    shard_size: int = 50,
    engine: Engine | str | None = None,
    run_dir: str | Path | None = None,
    progress: Any = None,
) -> TextEvaluation:
    """:func:`bastion.text.evaluate_text` shard by shard on ``engine``, kept in ``run_dir`` for resuming.
    ``model``: a :class:`~bastion.engine.TextModelRef` (any engine) or a live text classifier (the local
    engine only). ``progress(done, total)`` counts texts in finished shards. The result equals one pass
    of :func:`~bastion.text.evaluate_text` text for text; its stage ``seconds`` add up the shards'."""
    from bastion.text.data import texts_sha256
    from bastion.text.evaluation import (
        CASCADE_ORDER,
        TextEvaluation,
        TextStage,
        check_cascade,
        labelled_texts,
    )

    chosen = get_engine(engine)
    require_artifact(model, chosen, what="a live text model")
    stages_asked = check_cascade(preset, CASCADE_ORDER if attacks is None else attacks)
    items, y = labelled_texts(texts, labels)
    n = len(items)
    job = TextEvaluateJob(model, preset, stages_asked, max_queries, int(seed), texts_sha256(items, y))
    t0 = time.perf_counter()
    outcome = run_shards(
        evaluate_text_shard, job, make_shards(n, shard_size),
        lambda s: (items[s.start : s.stop], y[s.start : s.stop].clone()), job_key=job.key(shard_size),
        batch_size=1, engine=chosen, run_dir=run_dir, progress=progress,
    )  # fmt: skip
    metas = [o.meta for o in outcome.outputs]
    fooled = torch.cat([o.tensors["fooled"] for o in outcome.outputs]).bool()
    standing = sum(m["n_correct"] for m in metas)
    correct = standing
    stages = []
    for k, name in enumerate(stages_asked):
        rows = [m["stages"][k] for m in metas]
        ran = all(r["status"] == "ran" for r in rows)
        hit = sum(r["fooled"] for r in rows)
        standing -= hit
        reason = next((r["reason"] for r in rows if r["reason"]), None)
        stages.append(TextStage(
            name, "ran" if ran else "not run", sum(r["attacked"] for r in rows), hit, _share(standing, n),
            sum(r["queries"] for r in rows), sum(r["seconds"] for r in rows),
            invalid=sum(r["invalid"] for r in rows), reason=reason,
        ))  # fmt: skip
    if standing != correct - int(fooled.sum()):
        raise BastionError(
            "the shards' stage counts disagree with their texts; a shard file is inconsistent: rerun "
            "without --resume"
        )
    return TextEvaluation(
        preset=preset, n_samples=n, clean_accuracy=_share(correct, n), robust_accuracy=_share(standing, n),
        stages=tuple(stages), adversarials=tuple(a for m in metas for a in m["adversarials"]), fooled=fooled,
        fooled_by=tuple(f for m in metas for f in m["fooled_by"]), seed=int(seed),
        seconds=time.perf_counter() - t0, extra={"engine": {**outcome.to_dict(), "shard_size": shard_size}},
    )  # fmt: skip
