"""Shared fixtures of the gateway's tests: the database backends every storage test runs on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_unavailable() -> str | None:
    """Why the shared PostgreSQL cannot be used (None when it can): the tests skip saying so."""
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to connect means: skip, saying why
        return f"PostgreSQL at {PG_URL} is not reachable: {str(exc).splitlines()[0]}"
    return None


def drop_prefixed(prefix: str) -> None:
    """Drop every table of the shared PostgreSQL whose name starts with ``prefix``."""
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        names = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE :p"),
            {"p": prefix.replace("_", r"\_") + "%"},
        ).scalars()
        for name in list(names):
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, table prefix): a fresh SQLite file, or a unique prefix on the shared PostgreSQL (its
    tables dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}", "bastion_"
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    try:
        yield PG_URL, prefix
    finally:
        drop_prefixed(prefix)
