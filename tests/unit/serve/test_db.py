"""The SQLite engine's start-up: the switch to WAL is retried when another process holds the new file."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bastion.serve import db


class FlakyCursor:
    """Answers "database is locked" to the first ``fails`` statements, like SQLite does (without its busy
    handler) to a WAL switch that races another process opening the same new file."""

    def __init__(self, fails: int, message: str = "database is locked") -> None:
        self.fails, self.message, self.calls = fails, message, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        assert sql == "PRAGMA journal_mode = WAL"
        if self.calls <= self.fails:
            raise sqlite3.OperationalError(self.message)


def test_a_locked_wal_switch_is_retried() -> None:
    cur = FlakyCursor(fails=3)
    db._use_wal(cur)
    assert cur.calls == 4


def test_other_errors_are_not_retried() -> None:
    cur = FlakyCursor(fails=5, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        db._use_wal(cur)
    assert cur.calls == 1


def test_the_retry_stops_at_the_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.05)
    cur = FlakyCursor(fails=10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db._use_wal(cur)
    assert 1 < cur.calls < 100


def _switch(path: str, barrier: Any, out: Any) -> None:
    try:
        conn = sqlite3.connect(path, timeout=db.BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(db.BUSY_TIMEOUT_S * 1000)}")
        barrier.wait()
        db._use_wal(conn.cursor())
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS t (a)")
        conn.execute("COMMIT")
        out.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test with it
        out.put(repr(exc))


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork to start quickly")
def test_processes_opening_one_new_file_at_once_all_start(tmp_path: Path) -> None:
    """A dozen processes switch one new file to WAL at the same moment, 40 times. Without the retry
    some process got "database is locked" in every run of this test on a 2-core machine."""
    ctx = mp.get_context("fork")
    answers: list[str] = []
    for round_ in range(40):
        path = str(tmp_path / f"r{round_}.db")
        barrier, out = ctx.Barrier(12), ctx.Queue()
        procs = [ctx.Process(target=_switch, args=(path, barrier, out)) for _ in range(12)]
        for p in procs:
            p.start()
        answers += [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    assert [a for a in answers if a != "ok"] == []
    assert len(answers) == 480
