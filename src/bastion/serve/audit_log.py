"""The gateway's audit log: one record per request, append-only and hash-chained.

Record ``i`` stores ``h_i = sha256(h_{i-1} + canonical_json(record_i))`` with ``h_0`` 64 zeros, and a
head row holds the number of records and the last hash; each append reads the head, inserts the record
and moves the head in one transaction that holds the write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
``SELECT ... FOR UPDATE`` on the head row), so threads and processes sharing the database extend one
chain, and the record is committed (durable) when ``append`` returns. :meth:`AuditLog.append_many`
chains several records in one such transaction (group commit: see :mod:`bastion.serve.group_commit`).

What :meth:`AuditLog.verify` detects: an edited record (its hash no longer matches), a record deleted in
the middle (a gap in the sequence numbers, or its successor's hash), a reordered or inserted record
(the chain breaks there), a truncated tail (fewer records than the head counts) and rows added beside
the chain. What it cannot detect: someone with write access who rewrites a record *and* recomputes every
later hash and the head, or who deletes the tail and moves the head back. Against that, copy
:meth:`AuditLog.head` somewhere the database's writers cannot reach (a ticket, another host) now and
then; a later head must extend it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bastion._files import atomic_write
from bastion.errors import GatewayError
from bastion.serve.db import DEFAULT_DB, check_prefix, create_tables, engine_for, is_sqlite, transaction

GENESIS = "0" * 64
_CHUNK = 1000


@dataclass(frozen=True)
class AuditRecord:
    """One request as the gateway answered it. ``key_id`` names the key, never holds the token;
    ``input_digest`` is the SHA-256 (hex) of the raw input tensor's bytes (float32, C order);
    ``output`` is what was released (JSON-able, None if nothing)."""

    request_id: str
    key_id: str | None
    time: float
    endpoint: str
    model: str | None
    status: int
    rows: int
    input_digest: str | None
    output: Any
    policy: str | None
    latency_ms: float
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "key_id": self.key_id,
            "time": self.time,
            "endpoint": self.endpoint,
            "model": self.model,
            "status": self.status,
            "rows": self.rows,
            "input_digest": self.input_digest,
            "output": self.output,
            "policy": self.policy,
            "latency_ms": self.latency_ms,
            "flags": list(self.flags),
        }


class VerifyResult(NamedTuple):
    ok: bool
    records: int
    first_bad: int | None
    reason: str | None


def _dumps(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_as_list
    )


def _as_list(value: Any) -> Any:
    """Tensors and arrays become nested lists (what a client was sent); anything else is an error."""
    if callable(getattr(value, "tolist", None)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _normalise(record: AuditRecord) -> AuditRecord:
    """The record exactly as it will read back from the database (floats as floats, lists for tuples),
    so the hash computed at append time is the one verify recomputes."""
    try:
        output = json.loads(_dumps(record.output))
    except (TypeError, ValueError) as exc:
        raise GatewayError(
            f"audit record {record.request_id!r}: output is not JSON-able ({exc}); release lists, "
            "numbers and strings, with no NaN or infinity"
        ) from None
    for name in ("time", "latency_ms"):
        if not math.isfinite(float(getattr(record, name))):
            raise GatewayError(f"audit record {record.request_id!r}: {name} must be a finite number")
    return AuditRecord(
        request_id=str(record.request_id),
        key_id=None if record.key_id is None else str(record.key_id),
        time=float(record.time),
        endpoint=str(record.endpoint),
        model=None if record.model is None else str(record.model),
        status=int(record.status),
        rows=int(record.rows),
        input_digest=record.input_digest,
        output=output,
        policy=record.policy,
        latency_ms=float(record.latency_ms),
        flags=tuple(str(f) for f in record.flags),
    )


def canonical_json(record: AuditRecord) -> str:
    return _dumps(record.to_dict())


def chain_hash(previous: str, record: AuditRecord) -> str:
    return hashlib.sha256((previous + canonical_json(record)).encode("ascii")).hexdigest()


class AuditLog:
    """The audit log in a database (``url``: see :func:`bastion.serve.db.engine_for`); creates its
    tables if missing: ``{prefix}audit_log`` (indexed by key and time) and ``{prefix}audit_head``."""

    def __init__(self, url: str = DEFAULT_DB, *, prefix: str = "bastion_") -> None:
        self.url = url
        self.engine = engine_for(url)
        p = check_prefix(prefix)
        meta = sa.MetaData()
        self.table = sa.Table(
            f"{p}audit_log",
            meta,
            sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("request_id", sa.String(200), nullable=False),
            sa.Column("key_id", sa.String(64), nullable=True),
            sa.Column("time", sa.Float, nullable=False),
            sa.Column("endpoint", sa.String(200), nullable=False),
            sa.Column("model", sa.String(200), nullable=True),
            sa.Column("status", sa.Integer, nullable=False),
            sa.Column("rows", sa.Integer, nullable=False),
            sa.Column("input_digest", sa.String(64), nullable=True),
            sa.Column("output", sa.Text, nullable=False),
            sa.Column("policy", sa.String(200), nullable=True),
            sa.Column("latency_ms", sa.Float, nullable=False),
            sa.Column("flags", sa.Text, nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.Index(f"{p}audit_key_time", "key_id", "time"),
            sa.Index(f"{p}audit_time", "time"),
        )
        self.head_table = sa.Table(
            f"{p}audit_head",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("records", sa.BigInteger, nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
        )
        create_tables(self.engine, meta, url, seed=self._seed_head)

    def _seed_head(self, conn: Connection) -> None:
        if conn.execute(sa.select(self.head_table.c.id)).first() is None:
            conn.execute(self.head_table.insert().values(id=1, records=0, hash=GENESIS))

    def append(self, record: AuditRecord) -> int:
        """Add ``record`` at the end of the chain; its sequence number (1, 2, ...). Committed when it
        returns; safe from several threads and processes at once."""
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[AuditRecord]) -> list[int]:
        """Add ``records`` at the end of the chain, in order, in one transaction (one write lock, one
        durable commit: the cost of one :meth:`append`); their sequence numbers. All or none are
        committed: if any record is invalid or the commit fails, nothing is written."""
        recs = [_normalise(r) for r in records]  # before the lock: a bad record never holds it
        if not recs:
            return []
        h = self.head_table
        with transaction(self.engine, self.url, lock=True) as conn:
            head = conn.execute(sa.select(h.c.records, h.c.hash).where(h.c.id == 1).with_for_update()).first()
            if head is None:
                raise GatewayError(
                    f"audit log head row missing in {h.name}; the log was tampered with: run 'bastion log "
                    "verify' and restore the database from a backup"
                )
            first, digest = int(head[0]) + 1, str(head[1])
            rows = []
            for seq, rec in enumerate(recs, start=first):
                digest = chain_hash(digest, rec)
                rows.append({"seq": seq, "hash": digest, **self._columns(rec)})
            conn.execute(self.table.insert(), rows)
            conn.execute(h.update().where(h.c.id == 1).values(records=first + len(recs) - 1, hash=digest))
        return list(range(first, first + len(recs)))

    def head(self) -> tuple[int, str]:
        """(number of records, last hash): copy it elsewhere to anchor the chain (see the module doc)."""
        with transaction(self.engine, self.url) as conn:
            row = conn.execute(sa.select(self.head_table.c.records, self.head_table.c.hash)).first()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def verify(self) -> VerifyResult:
        """Recompute the chain over a consistent snapshot; the first record where it breaks."""
        with self._snapshot() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())
            head = conn.execute(sa.select(self.head_table.c.records, self.head_table.c.hash)).first()
            if head is None:
                return VerifyResult(False, total, 1, "the head row (record count and last hash) is missing")
            previous, last = GENESIS, 0
            for row in self._rows(conn, sa.true()):
                seq = int(row.seq)
                if seq != last + 1:
                    return VerifyResult(
                        False, total, last + 1, f"record {last + 1} is missing (the next is {seq}): deleted"
                    )
                problem = self._check_row(row, previous)
                if problem:
                    return VerifyResult(False, total, seq, problem)
                previous, last = row.hash, seq
            return self._check_head(total, last, previous, int(head[0]), str(head[1]))

    @staticmethod
    def _check_head(total: int, last: int, previous: str, count: int, head_hash: str) -> VerifyResult:
        if last < count:
            return VerifyResult(
                False,
                total,
                last + 1,
                f"the log ends at record {last} but its head counts {count}: the last "
                f"{count - last} record(s) were deleted",
            )
        if last > count:
            return VerifyResult(
                False, total, count + 1, f"record {count + 1} onwards were added outside the chain's head"
            )
        if previous != head_hash:
            return VerifyResult(False, total, last, f"record {last}'s hash differs from the head's")
        return VerifyResult(True, total, None, None)

    def _check_row(self, row: Any, previous: str) -> str | None:
        try:
            rec = self._record(row)
        except (TypeError, ValueError):
            return f"record {row.seq} (request {row.request_id}) holds invalid JSON: edited"
        if chain_hash(previous, rec) != row.hash:
            return (
                f"record {row.seq} (request {row.request_id}) does not match the chain: edited, or "
                "records before it were reordered, inserted or replaced"
            )
        return None

    def records(
        self,
        key_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records in append order; ``since`` inclusive, ``until`` exclusive (epoch seconds)."""
        out: list[AuditRecord] = []
        with transaction(self.engine, self.url) as conn:
            for row in self._rows(conn, self._where(key_id, since, until)):
                if limit is not None and len(out) >= limit:
                    break
                out.append(self._record(row))
        return out

    def export_jsonl(self, path: str | Path, key_id: str | None = None, since: float | None = None) -> int:
        """Write the records (with ``seq`` and ``hash``, so a full export can be re-verified elsewhere)
        as JSON lines, atomically; how many were written."""
        count = 0

        def write(fh: TextIO) -> None:
            nonlocal count
            with transaction(self.engine, self.url) as conn:
                for row in self._rows(conn, self._where(key_id, since, None)):
                    line = {"seq": int(row.seq), **self._record(row).to_dict(), "hash": row.hash}
                    fh.write(_dumps(line) + "\n")
                    count += 1

        atomic_write(Path(path), write, "w")
        return count

    def close(self) -> None:
        self.engine.dispose()

    def _where(self, key_id: str | None, since: float | None, until: float | None) -> Any:
        t = self.table
        clauses: list[sa.ColumnElement[bool]] = [sa.true()]
        if key_id is not None:
            clauses.append(t.c.key_id == key_id)
        if since is not None:
            clauses.append(t.c.time >= float(since))
        if until is not None:
            clauses.append(t.c.time < float(until))
        return sa.and_(*clauses)

    def _rows(self, conn: Connection, where: Any) -> Iterator[Any]:
        """Rows in sequence order, a chunk at a time (keyset paging: memory stays flat)."""
        last = 0
        while True:
            query = (
                sa.select(self.table)
                .where(where, self.table.c.seq > last)
                .order_by(self.table.c.seq)
                .limit(_CHUNK)
            )
            rows = conn.execute(query).all()
            yield from rows
            if len(rows) < _CHUNK:
                return
            last = int(rows[-1].seq)

    def _snapshot(self) -> Any:
        if is_sqlite(self.engine):
            # a deferred SQLite transaction reads one WAL snapshot from its first SELECT on
            return transaction(self.engine, self.url)
        return transaction(self.engine.execution_options(isolation_level="REPEATABLE READ"), self.url)

    @staticmethod
    def _columns(rec: AuditRecord) -> dict[str, Any]:
        cols = rec.to_dict()
        cols["output"] = _dumps(rec.output)
        cols["flags"] = _dumps(list(rec.flags))
        return cols

    @staticmethod
    def _record(row: Any) -> AuditRecord:
        return AuditRecord(
            request_id=row.request_id,
            key_id=row.key_id,
            time=float(row.time),
            endpoint=row.endpoint,
            model=row.model,
            status=int(row.status),
            rows=int(row.rows),
            input_digest=row.input_digest,
            output=json.loads(row.output),
            policy=row.policy,
            latency_ms=float(row.latency_ms),
            flags=tuple(json.loads(row.flags)),
        )
