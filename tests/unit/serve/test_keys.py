"""The gateway's key store: tokens shown once and stored hashed, scopes, revocation; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.errors import GatewayError
from bastion.serve.db import engine_for
from bastion.serve.keys import ApiKey, KeyStore, Scope


@pytest.fixture
def store_db(db_url: tuple[str, str]) -> tuple[str, str]:
    """(url, table prefix) on SQLite and on the shared PostgreSQL (conftest's ``db_url``)."""
    return db_url


@pytest.fixture
def store(store_db: tuple[str, str]) -> Iterator[KeyStore]:
    url, prefix = store_db
    ks = KeyStore(url, prefix=prefix)
    yield ks
    ks.close()


def _secret(token: str) -> str:
    return token.split("_", 2)[2]


def test_create_returns_a_token_that_authenticates(store: KeyStore) -> None:
    key, token = store.create("alice", Scope())
    assert token.startswith(f"bst_{key.key_id}_")
    assert len(_secret(token)) == 43  # secrets.token_urlsafe(32)
    assert store.authenticate(token) == key
    assert key.active and key.revoked is None and key.name == "alice"
    other, token2 = store.create("alice", Scope())
    assert other.key_id != key.key_id and _secret(token2) != _secret(token)


def test_secret_is_not_stored_in_the_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    ks = KeyStore(url)
    key, token = ks.create("bob", Scope())
    ks.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())  # the db file and its WAL
    assert key.key_id.encode() in stored  # the search itself works: the key id is there
    assert _secret(token).encode() not in stored
    assert token.encode() not in stored


def test_secret_is_not_stored_in_any_column(store: KeyStore) -> None:
    key, token = store.create("carol", Scope())
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(store.table)).all()
    text = repr(rows)
    assert key.key_id in text and _secret(token) not in text


def test_wrong_secret_and_unknown_key_are_refused(store: KeyStore) -> None:
    key, token = store.create("dave", Scope())
    secret = _secret(token)
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert store.authenticate(f"bst_{key.key_id}_{wrong}") is None
    assert store.authenticate(f"bst_{'0' * 16}_{secret}") is None  # well formed, no such key


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "",
        lambda t: "bst_",
        lambda t: "bst_x_y",
        lambda t: t + "x",
        lambda t: t[:-1],
        lambda t: t[4:],
        lambda t: t.upper(),
        lambda t: " " + t,
        lambda t: t.replace("bst_", "bsk_", 1),
        lambda t: t.replace("_", "-"),
        lambda t: None,
        lambda t: 12345,
    ],
)
def test_malformed_tokens_are_refused(store: KeyStore, mangle) -> None:  # type: ignore[no-untyped-def]
    _, token = store.create("eve", Scope())
    assert store.authenticate(mangle(token)) is None
    assert store.authenticate(token) is not None  # the genuine token still works


def test_revoked_key_authenticates_as_inactive(store: KeyStore) -> None:
    key, token = store.create("frank", Scope())
    revoked = store.revoke(key.key_id)
    assert not revoked.active and revoked.revoked is not None
    seen = store.authenticate(token)
    assert seen is not None and not seen.active
    again = store.revoke(key.key_id)
    assert again.revoked == revoked.revoked  # revoking twice keeps the first time
    assert [k.active for k in store.list()] == [False]


def test_scope_round_trips_through_the_store(store_db: tuple[str, str]) -> None:
    url, prefix = store_db
    scope = Scope(models=("digits", "faces"), output="top3", rate=0.5, burst=3, daily_quota=None)
    first = KeyStore(url, prefix=prefix)
    key, token = first.create("grace", scope)
    first.close()
    second = KeyStore(url, prefix=prefix)  # a fresh store reads what the first wrote
    assert second.get(key.key_id).scope == scope
    assert second.authenticate(token) == key
    assert [k.key_id for k in second.list()] == [key.key_id]
    second.close()


def test_unknown_key_id_is_a_gateway_error(store: KeyStore) -> None:
    with pytest.raises(GatewayError, match="no API key"):
        store.get("0123456789abcdef")
    with pytest.raises(GatewayError, match="bastion keys list"):
        store.revoke("nope")


def test_scope_allows_and_dict_round_trip() -> None:
    scope = Scope(models=("a", "b"), output="round2", rate=2, burst=4, daily_quota=7)
    assert scope.allows("a") and not scope.allows("c")
    assert Scope().allows("anything")
    assert Scope.from_dict(scope.to_dict()) == scope
    assert Scope.from_dict({}) == Scope()
    assert isinstance(scope.rate, float)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"output": "bogus"}, "output"),
        ({"rate": 0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"burst": 0}, "burst"),
        ({"daily_quota": 0}, "daily_quota"),
        ({"models": ()}, "models"),
    ],
)
def test_invalid_scopes_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(GatewayError, match=match):
        Scope(**kwargs)


def test_unknown_scope_field_is_refused() -> None:
    with pytest.raises(GatewayError, match="valid fields"):
        Scope.from_dict({"rate": 1.0, "colour": "red"})


def test_api_key_active_property() -> None:
    assert ApiKey("k", "n", Scope(), 1.0, None).active
    assert not ApiKey("k", "n", Scope(), 1.0, 2.0).active


def test_bad_names_prefixes_and_urls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    with pytest.raises(GatewayError, match="prefix"):
        KeyStore(url, prefix="x; DROP TABLE y")
    ks = KeyStore(url)
    with pytest.raises(GatewayError, match="name"):
        ks.create("  ", Scope())
    ks.close()
    with pytest.raises(GatewayError, match="scheme"):
        KeyStore("mysql://root@localhost/x")
    with pytest.raises(GatewayError, match="failed"):
        KeyStore(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'k.db'}")


def test_unreachable_postgres_is_one_line() -> None:
    with pytest.raises(GatewayError, match="reachable") as info:
        KeyStore("postgresql+psycopg://postgres@127.0.0.1:1/test")
    assert "\n" not in str(info.value)


def test_sqlite_engine_is_durable_and_takes_bare_paths(tmp_path: Path) -> None:
    engine = engine_for(str(tmp_path / "bare.db"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    engine.dispose()
    assert (tmp_path / "bare.db").exists()
