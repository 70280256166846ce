"""The gateway's audit log: hash chain, tamper evidence, concurrency (threads and processes), durability,
queries and export; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.errors import GatewayError
from bastion.serve.audit_log import GENESIS, AuditLog, AuditRecord, chain_hash

SRC = str(Path(__file__).resolve().parents[3] / "src")


def rec(i: int, key: str | None = "k1", t: float | None = None, **changes: object) -> AuditRecord:
    fields: dict = {
        "request_id": f"req-{i}",
        "key_id": key,
        "time": 1_000.0 + i if t is None else t,
        "endpoint": "/v1/predict",
        "model": "digits",
        "status": 200,
        "rows": 1,
        "input_digest": f"{i:064x}",
        "output": [[0.1 * (i % 10), 1 - 0.1 * (i % 10)]],
        "policy": "round1",
        "latency_ms": 1.25 + i,
        "flags": ("prada",) if i % 3 == 0 else (),
    }
    fields.update(changes)
    return AuditRecord(**fields)


def fill(log: AuditLog, n: int) -> None:
    for i in range(1, n + 1):
        assert log.append(rec(i)) == i


def raw(log: AuditLog, sql: str, **params: object) -> None:
    """Tamper with the table directly, as someone with database access would."""
    with log.engine.begin() as conn:
        conn.execute(sa.text(sql.format(t=log.table.name, h=log.head_table.name)), params)


# -- the chain ------------------------------------------------------------------------------------------


def test_append_numbers_records_and_chains_them(log: AuditLog) -> None:
    assert log.verify() == (True, 0, None, None)
    assert log.head() == (0, GENESIS)
    fill(log, 5)
    result = log.verify()
    assert result.ok and result.records == 5 and result.first_bad is None
    expected = GENESIS
    for r in log.records():
        expected = chain_hash(expected, r)
    assert log.head() == (5, expected)  # the chain is the documented sha256(h_prev + canonical_json)
    assert [r.request_id for r in log.records()] == [f"req-{i}" for i in range(1, 6)]


def test_records_read_back_as_written(log: AuditLog) -> None:
    original = rec(1, output={"probs": [0.25, 0.75], "label": 1}, flags=("a", "b"), key=None, model=None)
    log.append(original)
    (back,) = log.records()
    assert back == original


def test_values_are_normalised_so_the_chain_still_verifies(log: AuditLog) -> None:
    log.append(rec(1, t=1234, latency_ms=3, output=((1, 2), (3, 4)), flags=["x"]))  # ints, tuples, a list
    (back,) = log.records()
    assert back.time == 1234.0 and isinstance(back.time, float) and back.output == [[1, 2], [3, 4]]
    assert back.flags == ("x",)
    assert log.verify().ok


def test_tensor_output_is_stored_as_lists(log: AuditLog) -> None:
    import torch

    log.append(rec(1, output=torch.tensor([[0.25, 0.75]])))
    assert log.records()[0].output == [[0.25, 0.75]]
    assert log.verify().ok


def test_output_that_is_not_json_is_refused(log: AuditLog) -> None:
    with pytest.raises(GatewayError, match="JSON"):
        log.append(rec(1, output=[float("nan")]))
    with pytest.raises(GatewayError, match="JSON"):
        log.append(rec(1, output=object()))
    assert log.verify() == (True, 0, None, None)  # nothing half-written


# -- tamper evidence --------------------------------------------------------------------------------------


def test_edited_output_is_named(log: AuditLog) -> None:
    fill(log, 10)
    raw(log, "UPDATE {t} SET output = :o WHERE seq = 6", o="[[0.0,1.0]]")
    result = log.verify()
    assert not result.ok and result.first_bad == 6 and result.records == 10
    assert "record 6" in (result.reason or "") and "req-6" in (result.reason or "")


@pytest.mark.parametrize(
    "column, value",
    [("key_id", "other"), ("time", 5.0), ("status", 403), ("flags", "[]"), ("policy", "probs")],
)
def test_any_edited_field_is_detected(log: AuditLog, column: str, value: object) -> None:
    fill(log, 4)
    raw(log, f"UPDATE {{t}} SET {column} = :v WHERE seq = 3", v=value)
    assert log.verify().first_bad == 3


def test_invalid_json_is_detected(log: AuditLog) -> None:
    fill(log, 3)
    raw(log, "UPDATE {t} SET output = 'not json' WHERE seq = 2")
    result = log.verify()
    assert result.first_bad == 2 and "JSON" in (result.reason or "")


def test_deleted_record_in_the_middle(log: AuditLog) -> None:
    fill(log, 8)
    raw(log, "DELETE FROM {t} WHERE seq = 4")
    result = log.verify()
    assert not result.ok and result.first_bad == 4 and "missing" in (result.reason or "")


def test_deleted_and_renumbered_is_still_detected(log: AuditLog) -> None:
    fill(log, 6)
    raw(log, "DELETE FROM {t} WHERE seq = 3")
    raw(log, "UPDATE {t} SET seq = seq - 1 WHERE seq > 3")  # close the gap
    raw(log, "UPDATE {h} SET records = 5")
    assert log.verify().first_bad == 3


def test_reordered_pair(log: AuditLog) -> None:
    fill(log, 6)
    # swap records 3 and 4 wholesale (hashes included): only the order changes
    raw(log, "UPDATE {t} SET seq = -1 WHERE seq = 3")
    raw(log, "UPDATE {t} SET seq = 3 WHERE seq = 4")
    raw(log, "UPDATE {t} SET seq = 4 WHERE seq = -1")
    assert [r.request_id for r in log.records()][2:4] == ["req-4", "req-3"]
    result = log.verify()
    assert not result.ok and result.first_bad == 3


def test_truncated_tail(log: AuditLog) -> None:
    fill(log, 7)
    raw(log, "DELETE FROM {t} WHERE seq > 5")
    result = log.verify()
    assert not result.ok and result.first_bad == 6 and "deleted" in (result.reason or "")


def test_record_added_outside_the_chain(log: AuditLog) -> None:
    fill(log, 3)
    raw(
        log,
        "INSERT INTO {t} (seq, request_id, key_id, time, endpoint, model, status, rows, input_digest, "
        "output, policy, latency_ms, flags, hash) SELECT 4, 'fake', key_id, time, endpoint, model, status, "
        "rows, input_digest, output, policy, latency_ms, flags, hash FROM {t} WHERE seq = 3",
    )
    assert log.verify().first_bad == 4


def test_missing_head_row(log: AuditLog) -> None:
    fill(log, 2)
    raw(log, "DELETE FROM {h}")
    assert not log.verify().ok
    with pytest.raises(GatewayError, match="head row missing"):
        log.append(rec(3))


def test_a_full_rewrite_is_not_detectable_without_an_anchor(log: AuditLog) -> None:
    """The documented limit: whoever can write the database can drop the tail and move the head back;
    only a head copied elsewhere earlier (the anchor) shows it."""
    fill(log, 4)
    anchor = log.head()
    seq3_hash = log.records()
    expected = GENESIS
    for r in seq3_hash[:3]:
        expected = chain_hash(expected, r)
    raw(log, "DELETE FROM {t} WHERE seq = 4")
    raw(log, "UPDATE {h} SET records = 3, hash = :h", h=expected)
    assert log.verify().ok  # undetectable from inside the database...
    assert log.head()[0] < anchor[0]  # ...but the anchor's count is ahead of the head


# -- concurrency and durability -------------------------------------------------------------------------


def test_threads_share_one_chain(log: AuditLog) -> None:
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            for i in range(20):
                log.append(rec(i, key=f"thread{w}", request_id=f"t{w}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert log.verify() == (True, 120, None, None)
    assert len({r.request_id for r in log.records()}) == 120


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bastion.serve.audit_log import AuditLog, AuditRecord
    url, prefix, wid, n, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
    log = AuditLog(url, prefix=prefix)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    for i in range(n):
        seq = log.append(AuditRecord(f"{wid}-{i}", f"key{wid}", time.time(), "/v1/predict", "m", 200, 1,
                                     None, [i], "labels", 0.5, ()))
        print(seq, flush=True)
    """
)


def _spawn(url: str, prefix: str, wid: str, n: int, go: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, prefix, wid, str(n), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_processes_share_one_chain(db_url: tuple[str, str], tmp_path: Path) -> None:
    url, prefix = db_url
    go = tmp_path / "go"
    procs = [_spawn(url, prefix, f"w{w}", 50, go) for w in range(4)]  # all create the tables at once
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            p.kill()
            pytest.fail(f"a writer did not start: {p.communicate()[1].strip()[-2000:]}")
    go.touch()  # then append at the same moment
    seqs: list[int] = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        seqs += [int(s) for s in stdout.split()]
    assert sorted(seqs) == list(range(1, 201))  # every append got its own place
    log = AuditLog(url, prefix=prefix)
    assert log.verify() == (True, 200, None, None)
    records = log.records()
    for w in range(4):
        mine = [r.output[0] for r in records if r.key_id == f"keyw{w}"]
        assert mine == list(range(50))  # each process's records in its own order
    log.close()


def test_append_is_durable_when_it_returns(tmp_path: Path) -> None:
    """kill -9 a writer mid-stream: every sequence number it reported is in the log, which verifies."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    go = tmp_path / "go"
    go.touch()
    proc = _spawn(url, "bastion_", "w", 100_000, go)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    reported = [int(proc.stdout.readline()) for _ in range(30)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    log = AuditLog(url)
    result = log.verify()
    assert result.ok and result.records >= reported[-1]
    assert {int(r.request_id.split("-")[1]) + 1 for r in log.records()} >= set(reported)
    log.close()


# -- queries and export ---------------------------------------------------------------------------------


def test_records_filters(log: AuditLog) -> None:
    for i in range(1, 11):
        log.append(rec(i, key="even" if i % 2 == 0 else "odd"))
    assert [r.request_id for r in log.records(key_id="even")] == [f"req-{i}" for i in (2, 4, 6, 8, 10)]
    assert [r.request_id for r in log.records(since=1_004.0, until=1_007.0)] == ["req-4", "req-5", "req-6"]
    assert [r.request_id for r in log.records(key_id="odd", since=1_004.0)] == ["req-5", "req-7", "req-9"]
    assert len(log.records(limit=3)) == 3
    assert log.records(key_id="nobody") == []


def test_records_page_through_more_than_one_chunk(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.serve.audit_log as audit_log

    monkeypatch.setattr(audit_log, "_CHUNK", 3)
    fill(log, 10)
    assert [r.request_id for r in log.records()] == [f"req-{i}" for i in range(1, 11)]
    assert log.verify() == (True, 10, None, None)


def test_export_jsonl(log: AuditLog, tmp_path: Path) -> None:
    for i in range(1, 7):
        log.append(rec(i, key="a" if i <= 3 else "b"))
    out = tmp_path / "all.jsonl"
    assert log.export_jsonl(out) == 6
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["seq"] for d in lines] == list(range(1, 7))
    previous = GENESIS
    for d in lines:  # an export re-verifies offline
        seq, h = d.pop("seq"), d.pop("hash")
        record = AuditRecord(**{**d, "flags": tuple(d["flags"])})
        previous = chain_hash(previous, record)
        assert previous == h, seq
    assert log.export_jsonl(tmp_path / "b.jsonl", key_id="b", since=1_005.0) == 2
    assert log.export_jsonl(tmp_path / "none.jsonl", key_id="zzz") == 0
    assert (tmp_path / "none.jsonl").read_text() == ""


def test_schema_has_the_key_time_index(log: AuditLog) -> None:
    indexes = sa.inspect(log.engine).get_indexes(log.table.name)
    assert any(ix["column_names"] == ["key_id", "time"] for ix in indexes)


def test_one_append_is_fast_enough(log: AuditLog) -> None:
    start = time.perf_counter()
    fill(log, 20)
    per_append = (time.perf_counter() - start) / 20
    assert per_append < 0.1, f"{per_append * 1000:.1f} ms per append"
