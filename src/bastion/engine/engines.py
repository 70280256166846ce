"""Where shards run: in this process (:class:`LocalEngine`) or as Ray tasks (:class:`RayEngine`).

An engine takes a *task* (a module-level function ``task(job, shard, payload, batch_size) ->
ShardOutput``, importable by name on every worker), the job (a frozen dataclass of plain values: model
reference, threat, settings; never a live model) and one payload per shard (that shard's input tensors),
and hands each finished shard to ``on_done`` as it completes, in any order. The runner
(:mod:`bastion.engine.runner`) writes them down and puts them back in shard order.

Both engines run a shard the same way (:func:`run_task`): with ``threads`` torch threads (set and
restored around the task, so the arithmetic, and therefore every result, is the same on any engine and
any number of workers), and on a GPU out-of-memory error again at half the batch size, down to 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch

from bastion.engine.rundir import ShardOutput
from bastion.engine.shards import Shard
from bastion.errors import BastionError

__all__ = ["ENGINES", "Engine", "LocalEngine", "RayEngine", "ShardFailed", "get_engine", "run_task"]

log = logging.getLogger(__name__)

Task = Callable[[Any, Shard, Any, int], ShardOutput]
OnDone = Callable[[Shard, ShardOutput], None]
ENGINES = ("local", "ray")


class ShardFailed(BastionError):
    """A shard could not be produced (after the engine's retries): the run fails, naming it."""

    def __init__(self, shard: Shard, cause: BaseException | str) -> None:
        text = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        super().__init__(f"{shard.describe()} failed: {text}")
        self.shard = shard


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_task(
    task: Task, job: Any, shard: Shard, payload: Any, batch_size: int, threads: int | None
) -> ShardOutput:
    """Run one shard: ``threads`` torch threads; a CUDA out-of-memory error retries at half the batch."""
    with _threads(threads):
        while True:
            try:
                return task(job, shard, payload, batch_size)
            except torch.cuda.OutOfMemoryError:
                if batch_size == 1:
                    raise
                batch_size = max(1, batch_size // 2)
                log.warning("%s: out of GPU memory; retrying at batch size %d", shard.describe(), batch_size)
                torch.cuda.empty_cache()


class Engine(Protocol):
    name: str
    workers: int

    def run(self, task: Task, job: Any, items: Sequence[tuple[Shard, Any]], batch_size: int,
            on_done: OnDone) -> None: ...  # fmt: skip


class LocalEngine:
    """Shards one after another in this process; ``threads`` torch threads each (None: as they are)."""

    name = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads, self.workers = threads, 1

    def run(self, task: Task, job: Any, items: Sequence[tuple[Shard, Any]], batch_size: int,
            on_done: OnDone) -> None:  # fmt: skip
        for shard, payload in items:
            try:
                out = run_task(task, job, shard, payload, batch_size, self.threads)
            except (KeyboardInterrupt, torch.cuda.OutOfMemoryError):
                raise
            except BastionError:
                raise
            except Exception as exc:
                raise ShardFailed(shard, exc) from exc
            on_done(shard, out)


class RayEngine:
    """One Ray task per shard, at most ``workers`` in flight, each with one CPU and ``threads`` threads.

    ``address``: a running cluster (``ray://...`` or ``auto``); None starts a local one with ``workers``
    CPUs for the run and stops it after. A task whose worker process dies is retried ``max_retries``
    times by Ray; any other exception fails the shard (and the run, naming it) at once.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, *, threads: int = 1,
                 max_retries: int = 3, gpus_per_task: float = 0.0) -> None:  # fmt: skip
        if workers is not None and workers < 1:
            raise BastionError(f"--workers must be >= 1, got {workers}")
        self.address, self.threads, self.max_retries = address, threads, max_retries
        self.gpus_per_task = gpus_per_task
        self.workers = workers or (os.cpu_count() or 1)

    def run(self, task: Task, job: Any, items: Sequence[tuple[Shard, Any]], batch_size: int,
            on_done: OnDone) -> None:  # fmt: skip
        try:
            import ray
        except ImportError:
            raise BastionError("--engine ray needs Ray: pip install 'bastion[ray]'") from None
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, num_cpus=None if self.address else self.workers,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)  # fmt: skip
        try:
            remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_task, max_retries=self.max_retries)(
                run_task
            )
            job_ref = ray.put(job)
            queue = list(items)
            pending: dict[Any, Shard] = {}
            while queue or pending:
                while queue and len(pending) < self.workers:
                    shard, payload = queue.pop(0)
                    pending[remote.remote(task, job_ref, shard, payload, batch_size, self.threads)] = shard
                done, _ = ray.wait(list(pending), num_returns=1)
                shard = pending.pop(done[0])
                try:
                    out = ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    raise ShardFailed(shard, getattr(exc, "cause", None) or exc) from None
                on_done(shard, out)
        finally:
            if started:
                ray.shutdown()


def get_engine(name: str | Engine | None, *, address: str | None = None, workers: int | None = None,
               threads: int | None = None) -> Engine:  # fmt: skip
    """An engine by name (``local`` or ``ray``), or the engine given."""
    if name is None or name == "local":
        if address is not None or (workers is not None and workers != 1):
            raise BastionError("--address and --workers apply to --engine ray")
        return LocalEngine(threads)
    if name == "ray":
        return RayEngine(address, workers, threads=1 if threads is None else threads)
    if isinstance(name, str):
        raise BastionError(f"unknown engine {name!r}; use one of: {', '.join(ENGINES)}")
    return name
