"""The shard runner: skip what a run directory already holds, run the rest on an engine, keep each
finished shard, and return every shard's output in shard order.

``run_shards(task, job, shards, payload, engine=..., run_dir=...)``: ``payload(shard)`` gives a shard's
inputs (called only for shards still to run). Each finished shard is written to ``run_dir`` (if any) as
it arrives, so an interruption at any point loses at most the shards in flight. The outputs come back
complete or not at all: a shard that fails stops the run with its name (:class:`ShardFailed`), and a
result whose examples do not add up to the shards' sizes is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.engine.engines import Engine, Task, get_engine
from bastion.engine.rundir import RunDirectory, ShardOutput
from bastion.engine.shards import Shard
from bastion.errors import BastionError

__all__ = ["RunOutcome", "run_shards"]


@dataclass(frozen=True)
class RunOutcome:
    """Every shard's output in shard order, and the run's bookkeeping: ``resumed`` shards read back from
    the run directory, ``redone`` ones whose file was missing or corrupt, the ``engine``'s name and
    ``workers``, and the wall-clock ``seconds`` of this invocation."""

    outputs: list[ShardOutput]
    shards: list[Shard]
    resumed: list[int]
    redone: list[int]
    engine: str
    workers: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "workers": self.workers, "shards": len(self.shards),
                "resumed": self.resumed, "redone": self.redone}  # fmt: skip


def run_shards(
    task: Task,
    job: Any,
    shards: list[Shard],
    payload: Callable[[Shard], Any],
    *,
    job_key: Mapping[str, Any],
    batch_size: int,
    engine: Engine | str | None = None,
    run_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunOutcome:
    """Run ``task`` over ``shards`` (see the module docstring). ``job_key``: the job as JSON-ready values,
    whose digest identifies the run in ``run_dir``. ``progress(examples_done, examples_total)``."""
    chosen = get_engine(engine)
    t0 = time.perf_counter()
    store = None if run_dir is None else RunDirectory(run_dir, job_key, shards)
    done: dict[int, ShardOutput] = {}
    resumed: list[int] = []
    if store is not None:
        for shard in store.finished():
            done[shard.index] = store.load(shard)
            resumed.append(shard.index)
    total = sum(len(s) for s in shards)
    finished = sum(len(s) for s in shards if s.index in done)
    if progress is not None:
        progress(finished, total)

    def on_done(shard: Shard, out: ShardOutput) -> None:
        nonlocal finished
        _check(shard, out)
        if store is not None:
            store.save(shard, out)
        done[shard.index] = out
        finished += len(shard)
        if progress is not None:
            progress(finished, total)

    todo = [s for s in shards if s.index not in done]
    if todo:
        chosen.run(task, job, [(s, payload(s)) for s in todo], batch_size, on_done)
    missing = [s.describe() for s in shards if s.index not in done]
    if missing:
        raise BastionError(f"the run ended without {', '.join(missing)}; rerun it with --resume to finish")
    return RunOutcome(
        outputs=[done[s.index] for s in shards],
        shards=shards,
        resumed=resumed,
        redone=[] if store is None else list(store.redone),
        engine=chosen.name,
        workers=chosen.workers,
        seconds=time.perf_counter() - t0,
    )


def _check(shard: Shard, out: ShardOutput) -> None:
    """Every per-example tensor covers exactly the shard's examples: nothing dropped, nothing extra."""
    for name, t in out.tensors.items():
        if t.shape[0] != len(shard):
            raise BastionError(
                f"{shard.describe()} returned {t.shape[0]} rows of {name!r} for {len(shard)} examples"
            )
