"""Database engines for the gateway's key store and audit log: SQLite by default, PostgreSQL to share.

SQLite is tuned for an append-only log that must survive ``kill -9`` and a power cut: WAL (readers never
block the writer), ``synchronous=FULL`` (a commit is on disk when it returns) and a busy timeout (several
workers queue for the write lock instead of failing). Writers that must be serialised (the audit chain)
open their transaction with ``BEGIN IMMEDIATE`` through :func:`write_lock`; PostgreSQL serialises them
with a row lock instead (see :mod:`bastion.serve.audit_log`).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from bastion.errors import GatewayError

DEFAULT_DB = "sqlite:///bastion-gateway.db"
BUSY_TIMEOUT_S = 30.0
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")
_URL_HELP = "use sqlite:///PATH.db, a bare PATH.db, or postgresql+psycopg://USER@HOST:PORT/DB"


def normalise_url(url: str | Path) -> str:
    """``x.db`` -> ``sqlite:///x.db``; ``postgresql://`` and ``postgres://`` -> the psycopg 3 driver."""
    text = str(url).strip()
    if not text:
        raise GatewayError(f"empty database URL; {_URL_HELP}")
    if "://" not in text:
        return f"sqlite:///{text}"
    scheme, rest = text.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        return text
    raise GatewayError(f"unsupported database URL scheme {scheme!r}; {_URL_HELP}")


def sqlite_path(url: str | Path) -> Path | None:
    """The file behind a SQLite URL (None for PostgreSQL or an in-memory SQLite database)."""
    parsed = sa.engine.make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def engine_for(url: str) -> Engine:
    """An engine for ``url`` (see :func:`normalise_url`); SQLite gets WAL, synchronous=FULL and a busy
    timeout on every connection."""
    full = normalise_url(url)
    try:
        parsed = sa.engine.make_url(full)
    except SQLAlchemyError:
        raise GatewayError(f"cannot parse database URL {url!r}; {_URL_HELP}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(full)
    return sa.create_engine(full, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    # check_same_thread: the pool hands a connection to one thread at a time, whichever it is
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # the driver's own implicit BEGIN would be deferred: we issue BEGIN ourselves (see _on_begin)
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cur)
        cur.execute("PRAGMA synchronous = FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _use_wal(cur: Any) -> None:
    """Switch the file to WAL. SQLite answers "database is locked" to this switch at once, without its
    busy handler, when another process opens or switches the same new file at that moment (gateway
    workers or audit writers starting together), so it is retried here within the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.001
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's write lock from its first statement on
    SQLite (``BEGIN IMMEDIATE``: two writers never both read the same chain head). On PostgreSQL it is
    a plain transaction: the caller locks what it needs (``SELECT ... FOR UPDATE``)."""
    with engine.connect() as conn:
        if is_sqlite(engine):
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


@contextmanager
def transaction(engine: Engine, url: str, *, lock: bool = False) -> Iterator[Connection]:
    """A transaction (holding the write lock with ``lock``, see :func:`write_lock`) whose database
    failures surface as one-line GatewayErrors; committed when the block ends without an exception."""
    try:
        with write_lock(engine) if lock else engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise unreachable(url, exc) from None


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise GatewayError(
            f"table prefix {prefix!r} is not a plain SQL name; use letters, digits and '_' (e.g. 'bastion_')"
        )
    return prefix


def create_tables(
    engine: Engine, metadata: sa.MetaData, url: str, seed: Callable[[Connection], None] | None = None
) -> None:
    """Create ``metadata``'s tables if missing, then call ``seed`` in the same transaction, safely when
    several processes start at once (a check-then-create race would make one of them fail on
    PostgreSQL)."""
    with transaction(engine, url, lock=True) as conn:
        if not is_sqlite(engine):
            # one creator at a time; the lock is released with the transaction
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x62617374})
        metadata.create_all(conn, checkfirst=True)
        if seed is not None:
            seed(conn)


def unreachable(url: str, exc: BaseException) -> GatewayError:
    """One line for a database that cannot be opened or answered."""
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    shown = sa.engine.make_url(normalise_url(url)).render_as_string(hide_password=True)
    return GatewayError(
        f"database {shown} failed: {first}; check that it exists and is reachable, or pass another --db"
    )
