"""Group commit of audit records: AuditLog.append_many and the GroupCommitter's writer thread (order,
concurrency, failed commits, shutdown, asyncio), on SQLite and PostgreSQL, and its throughput against
one transaction per record."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest

from bastion.errors import GatewayError
from bastion.serve.audit_log import AuditLog, AuditRecord
from bastion.serve.group_commit import GroupCommitter


def rec(request_id: str, output: object = None, key_id: str = "k1") -> AuditRecord:
    return AuditRecord(
        request_id=request_id,
        key_id=key_id,
        time=time.time(),
        endpoint="POST /v1/predict",
        model="digits",
        status=200,
        rows=1,
        input_digest="ab" * 32,
        output=[3] if output is None else output,
        policy="labels",
        latency_ms=1.5,
    )


class ControlledLog(AuditLog):
    """An AuditLog whose append_many can be held at a gate and made to fail on chosen calls (1-based),
    and that remembers its batch sizes."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_calls: set[int] = set()
        self.sizes: list[int] = []

    def append_many(self, records: Sequence[AuditRecord]) -> list[int]:
        self.sizes.append(len(records))
        call = len(self.sizes)
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        if call in self.fail_calls:
            raise GatewayError("simulated: disk full")
        return super().append_many(records)


@pytest.fixture
def controlled(tmp_path: Path) -> Iterator[ControlledLog]:
    audit = ControlledLog(f"sqlite:///{tmp_path / 'controlled.db'}")
    yield audit
    audit.close()


def _hold_first_batch(log: ControlledLog, committer: GroupCommitter, request_id: str) -> Future[int]:
    """Submit one record and return once the writer is committing it alone, blocked at the gate."""
    log.gate.clear()
    future = committer.submit(rec(request_id))
    assert log.entered.wait(10), "the writer never started a commit"
    return future


# ---------------------------------------------------------------- append_many


def test_append_many_chains_like_appends(tmp_path: Path) -> None:
    records = [rec(f"r{i}", output=[i, 0.5]) for i in range(7)]
    one_by_one = AuditLog(f"sqlite:///{tmp_path / 'a.db'}")
    batched = AuditLog(f"sqlite:///{tmp_path / 'b.db'}")
    assert [one_by_one.append(r) for r in records] == list(range(1, 8))
    assert batched.append_many(records[:3]) == [1, 2, 3]
    assert batched.append_many([]) == []
    assert batched.append_many(records[3:]) == [4, 5, 6, 7]
    assert batched.head() == one_by_one.head()  # same chain, hash for hash
    assert batched.verify().ok
    assert [r.request_id for r in batched.records()] == [r.request_id for r in records]


def test_append_many_is_all_or_nothing(log: AuditLog) -> None:
    log.append(rec("before"))
    with pytest.raises(GatewayError, match="not JSON-able"):
        log.append_many([rec("good"), rec("bad", output=float("nan")), rec("good2")])
    assert [r.request_id for r in log.records()] == ["before"]
    assert log.append_many([rec("after1"), rec("after2")]) == [2, 3]
    assert log.verify().ok


# ---------------------------------------------------------------- committer


def test_records_chained_in_submission_order(log: AuditLog) -> None:
    with GroupCommitter(log, max_batch=16) as committer:
        futures = [committer.submit(rec(f"r{i}")) for i in range(100)]
        seqs = [f.result(30) for f in futures]
    assert seqs == list(range(1, 101))
    assert [r.request_id for r in log.records()] == [f"r{i}" for i in range(100)]
    assert committer.records == 100
    assert log.verify() == (True, 100, None, None)


def test_many_threads_each_record_once_with_its_own_number(log: AuditLog) -> None:
    threads_n, per_thread = 16, 50
    committer = GroupCommitter(log)
    got: dict[str, int] = {}
    per_thread_seqs: list[list[int]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def client(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                request_id = f"t{t}-{i}"
                seq = committer.append(rec(request_id, key_id=f"k{t}"), timeout=60)
                per_thread_seqs[t].append(seq)
                with lock:
                    got[request_id] = seq
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    committer.close()
    assert not errors, errors
    total = threads_n * per_thread
    assert len(got) == total
    assert sorted(got.values()) == list(range(1, total + 1))  # unique, no gaps
    by_seq = {i + 1: r for i, r in enumerate(log.records())}
    assert len(by_seq) == total
    for request_id, seq in got.items():  # each submitter got the number of its own record
        assert by_seq[seq].request_id == request_id
    for seqs in per_thread_seqs:  # a thread's records follow each other in the chain
        assert seqs == sorted(seqs)
    assert committer.batches < total  # records did share commits
    assert log.verify().ok


def test_failed_commit_fails_its_batch_and_the_writer_goes_on(controlled: ControlledLog) -> None:
    controlled.fail_calls = {2}
    committer = GroupCommitter(controlled, max_wait_ms=0)
    first = _hold_first_batch(controlled, committer, "a0")
    doomed = [committer.submit(rec(f"b{i}")) for i in range(4)]  # queued behind a0: one batch
    controlled.gate.set()
    assert first.result(10) == 1
    for future in doomed:
        with pytest.raises(GatewayError, match=r"was not written.*disk full") as info:
            future.result(10)
        assert isinstance(info.value.__cause__, GatewayError)
    assert committer.append(rec("c0"), timeout=10) == 2
    committer.close()
    assert controlled.sizes == [1, 4, 1]
    assert [r.request_id for r in controlled.records()] == ["a0", "c0"]  # nothing of the failed batch
    assert controlled.verify().ok


def test_first_commit_failing_alone(controlled: ControlledLog) -> None:
    controlled.fail_calls = {1}
    with GroupCommitter(controlled) as committer:
        with pytest.raises(GatewayError, match="disk full"):
            committer.append(rec("x"), timeout=10)
        assert committer.append(rec("y"), timeout=10) == 1


def test_invalid_record_fails_alone(log: AuditLog) -> None:
    with GroupCommitter(log) as committer:
        bad = committer.submit(rec("bad", output=float("inf")))
        good = [committer.submit(rec(f"g{i}")) for i in range(3)]
        with pytest.raises(GatewayError, match="not JSON-able"):
            bad.result(10)
        assert [f.result(10) for f in good] == [1, 2, 3]


def test_max_batch_caps_each_commit(controlled: ControlledLog) -> None:
    committer = GroupCommitter(controlled, max_batch=4, max_wait_ms=0)
    futures = [_hold_first_batch(controlled, committer, "a0")]
    futures += [committer.submit(rec(f"b{i}")) for i in range(10)]
    controlled.gate.set()
    assert [f.result(10) for f in futures] == list(range(1, 12))
    committer.close()
    assert controlled.sizes == [1, 4, 4, 2]


def test_waits_for_stragglers_only_after_a_larger_batch(controlled: ControlledLog) -> None:
    committer = GroupCommitter(controlled, max_wait_ms=400)
    # a lone client is never delayed by the wait (last batch of 1)
    began = time.perf_counter()
    for i in range(5):
        committer.append(rec(f"solo{i}"), timeout=10)
    assert time.perf_counter() - began < 5 * 0.4 / 2
    # a batch of 4 makes the writer expect about 4: one record waits for the next three
    controlled.entered.clear()
    held = _hold_first_batch(controlled, committer, "a0")
    burst = [committer.submit(rec(f"b{i}")) for i in range(4)]
    controlled.gate.set()
    [f.result(10) for f in [held, *burst]]
    late = [committer.submit(rec("c0"))]
    time.sleep(0.05)
    late += [committer.submit(rec(f"c{i}")) for i in range(1, 4)]
    assert [f.result(10) for f in late] == [11, 12, 13, 14]
    committer.close()
    assert controlled.sizes == [1, 1, 1, 1, 1, 1, 4, 4]


def test_close_commits_pending_records(controlled: ControlledLog) -> None:
    committer = GroupCommitter(controlled)
    futures = [_hold_first_batch(controlled, committer, "a0")]
    futures += [committer.submit(rec(f"p{i}")) for i in range(20)]
    threading.Timer(0.2, controlled.gate.set).start()
    committer.close()  # returns only once everything queued is committed
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == list(range(1, 22))
    with pytest.raises(GatewayError, match="closed"):
        committer.submit(rec("late"))
    committer.close()  # again: nothing more to do
    assert controlled.verify() == (True, 21, None, None)


def test_close_with_timeout_fails_what_was_not_taken(controlled: ControlledLog) -> None:
    committer = GroupCommitter(controlled)
    held = _hold_first_batch(controlled, committer, "a0")
    queued = [committer.submit(rec(f"q{i}")) for i in range(3)]
    committer.close(timeout=0.2)  # the writer is stuck in a commit
    for future in queued:
        with pytest.raises(GatewayError, match="closed before this record was written"):
            future.result(1)
    assert not held.done()
    controlled.gate.set()
    assert held.result(10) == 1  # the batch in flight is still answered
    committer._thread.join(10)
    assert [r.request_id for r in controlled.records()] == ["a0"]


def test_append_async_does_not_block_the_loop(controlled: ControlledLog) -> None:
    committer = GroupCommitter(controlled)

    async def main() -> tuple[list[int], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        controlled.gate.clear()
        tick_task = asyncio.create_task(ticker())
        appends = [asyncio.create_task(committer.append_async(rec(f"r{i}"))) for i in range(20)]
        await asyncio.sleep(0.2)  # the writer is held at the gate: the loop must keep running
        controlled.gate.set()
        seqs = list(await asyncio.gather(*appends))
        stop.set()
        await tick_task
        return seqs, ticks

    seqs, ticks = asyncio.run(main())
    committer.close()
    assert sorted(seqs) == list(range(1, 21))
    assert ticks >= 5
    by_seq = {i + 1: r.request_id for i, r in enumerate(controlled.records())}
    assert all(by_seq[s] == f"r{i}" for i, s in enumerate(seqs))


def test_cancelled_async_caller_still_gets_its_record_written(controlled: ControlledLog) -> None:
    committer = GroupCommitter(controlled)

    async def main() -> None:
        controlled.gate.clear()
        task = asyncio.create_task(committer.append_async(rec("gone")))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    controlled.gate.set()
    committer.close()
    assert [r.request_id for r in controlled.records()] == ["gone"]


def test_bad_settings_are_refused(log: AuditLog) -> None:
    with pytest.raises(GatewayError, match="max_batch"):
        GroupCommitter(log, max_batch=0)
    with pytest.raises(GatewayError, match="max_wait_ms"):
        GroupCommitter(log, max_wait_ms=-1)


# ---------------------------------------------------------------- throughput


def _throughput(append: object, threads_n: int, per_thread: int) -> float:
    start = threading.Barrier(threads_n + 1)
    errors: list[BaseException] = []

    def client(t: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                append(rec(f"t{t}-{i}"))  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join(300)
    elapsed = time.perf_counter() - began
    assert not errors, errors
    return threads_n * per_thread / elapsed


def test_throughput_against_one_commit_per_record(db_url: tuple[str, str], tmp_path: Path) -> None:
    """Measured and printed (run with -s); asserted only loosely, the machine may be busy."""
    url, prefix = db_url
    threads_n, per_thread = 16, 30
    plain = AuditLog(url, prefix=prefix)
    plain_rate = _throughput(plain.append, threads_n, per_thread)
    plain.close()
    if url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'grouped.db'}"
    grouped_log = AuditLog(url, prefix=prefix)
    committer = GroupCommitter(grouped_log)
    grouped_rate = _throughput(committer.append, threads_n, per_thread)
    committer.close()
    mean_batch = committer.records / max(committer.batches, 1)
    print(
        f"\n{url.split(':')[0]}: {threads_n} threads x {per_thread} records: append {plain_rate:.0f}/s, "
        f"group commit {grouped_rate:.0f}/s ({grouped_rate / plain_rate:.1f}x, mean batch {mean_batch:.1f})"
    )
    assert grouped_log.verify().ok
    assert committer.records == threads_n * per_thread
    assert mean_batch > 1.5
    grouped_log.close()
