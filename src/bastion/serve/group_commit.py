"""Group commit for the audit log: many requests' records share one durable transaction.

Every request waits for its audit record to be durable before its response goes out. One
:meth:`AuditLog.append` is one ``fsync`` (SQLite ``synchronous=FULL``) or one WAL flush (PostgreSQL),
a few milliseconds under a write lock, so concurrent requests queue behind each other. A
:class:`GroupCommitter` owns one writer thread: requests hand it their records (:meth:`submit`,
:meth:`append`, :meth:`append_async`) and the writer commits whatever is queued with one
:meth:`AuditLog.append_many`, then answers every request of that batch. Throughput scales with the batch
size while each request still gets its answer only once its record is committed.

Batching rule and its trade-off: the writer never sleeps while records wait. It takes what is queued
(up to ``max_batch``); only when fewer records are queued than the last batch held (a sign that more
requests are on their way) does it wait, at most ``max_wait_ms``, for the queue to reach that size.
Waiting adds up to ``max_wait_ms`` to those requests' latency but saves commits when a burst arrives
spread out; a lone client (last batch of 1) is never delayed. ``max_wait_ms=0`` never waits: batches
then form only from what arrives during the previous commit, which is already most of the gain under
steady load.

Chain order is submission order: records are queued first in, first out, batches are committed one at
a time, and each batch is chained in queue order. Several processes (uvicorn workers) each run their
own committer; :meth:`AuditLog.append_many` takes the database's write lock, so they still extend one
chain.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future

from bastion.errors import GatewayError
from bastion.serve.audit_log import AuditLog, AuditRecord, _normalise

__all__ = ["GroupCommitter"]

logger = logging.getLogger("bastion.serve.group_commit")

_Item = tuple[AuditRecord, "Future[int]"]


class GroupCommitter:
    """A background writer that appends records to ``log`` in batches of at most ``max_batch``, each
    one transaction. Thread-safe; :meth:`close` commits what is queued, then stops the writer."""

    def __init__(self, log: AuditLog, max_batch: int = 256, max_wait_ms: float = 2.0) -> None:
        if int(max_batch) < 1:
            raise GatewayError(f"max_batch = {max_batch}: use a whole number of records >= 1, e.g. 256")
        if not max_wait_ms >= 0:
            raise GatewayError(f"max_wait_ms = {max_wait_ms}: use a number of milliseconds >= 0, e.g. 2")
        self.log = log
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.batches = 0  # committed batches and records, for metrics and benchmarks
        self.records = 0
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last_batch = 1
        self._thread = threading.Thread(target=self._run, name="bastion-audit-writer", daemon=True)
        self._thread.start()

    def submit(self, record: AuditRecord) -> Future[int]:
        """Queue ``record``; the future resolves to its sequence number once its batch is committed, or
        to the exception that kept the batch from being committed (then none of it was written). An
        invalid record fails its own future at once and never joins a batch."""
        future: Future[int] = Future()
        try:
            # validate here, in the caller's thread: one bad record must not fail a whole batch
            rec = _normalise(record)
        except GatewayError as exc:
            future.set_exception(exc)
            return future
        with self._cond:
            if self._closed:
                raise GatewayError(
                    f"audit record {record.request_id!r}: the group committer is closed; submit before "
                    "close() or create a new GroupCommitter"
                )
            self._queue.append((rec, future))
            self._cond.notify()
        return future

    def append(self, record: AuditRecord, timeout: float | None = None) -> int:
        """:meth:`submit` and wait: the sequence number, durable when this returns (for worker threads)."""
        return self.submit(record).result(timeout)

    async def append_async(self, record: AuditRecord) -> int:
        """:meth:`append` for an event loop: awaits the commit without blocking the loop. A cancelled
        caller (client gone) does not withdraw the record: it is still written."""
        return await asyncio.shield(asyncio.wrap_future(self.submit(record)))

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, then stop the writer. If it is not done within ``timeout`` seconds,
        the records it has not taken yet are failed (not written); the batch being committed is still
        answered when its commit ends. Calling it again does nothing more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._fail_queued("the group committer was closed before this record was written")

    def __enter__(self) -> GroupCommitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                self._commit(batch)
        finally:
            # normally the queue is empty here; if the writer died, no waiter is left hanging
            with self._cond:
                self._closed = True
            self._fail_queued("the audit writer thread stopped")

    def _take(self) -> list[_Item] | None:
        """The next batch (futures marked running, cancelled ones dropped); None once closed and empty."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None
            want = min(self._last_batch, self.max_batch)
            if len(self._queue) < want and self.max_wait > 0 and not self._closed:
                deadline = time.monotonic() + self.max_wait
                while len(self._queue) < want and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch: list[_Item] = []
            while self._queue and len(batch) < self.max_batch:
                item = self._queue.popleft()
                # from here on the future cannot be cancelled; one cancelled before is not written
                if item[1].set_running_or_notify_cancel():
                    batch.append(item)
            self._last_batch = max(1, len(batch))
            return batch

    def _commit(self, batch: list[_Item]) -> None:
        if not batch:
            return
        try:
            seqs = self.log.append_many([rec for rec, _ in batch])
            if len(seqs) != len(batch):
                raise GatewayError(
                    f"append_many returned {len(seqs)} sequence numbers for {len(batch)} records"
                )
        except BaseException as exc:  # every waiter must hear of it, whatever it was
            logger.error("audit batch of %d record(s) was not committed: %s", len(batch), exc)
            for rec, future in batch:
                future.set_exception(_failed(rec, exc))
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.records += len(batch)
        for (_, future), seq in zip(batch, seqs, strict=True):
            future.set_result(seq)

    def _fail_queued(self, why: str) -> None:
        with self._cond:
            items = list(self._queue)
            self._queue.clear()
        for rec, future in items:
            if future.set_running_or_notify_cancel():
                future.set_exception(
                    GatewayError(f"audit record {rec.request_id!r}: {why}; retry the request")
                )


def _failed(rec: AuditRecord, exc: BaseException) -> GatewayError:
    """A fresh error per waiter (one exception object raised in many threads would share a traceback)."""
    err = GatewayError(
        f"audit record {rec.request_id!r} was not written: its batch's commit failed ({exc}); retry the "
        "request once the database is back"
    )
    err.__cause__ = exc
    return err
