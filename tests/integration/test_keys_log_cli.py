"""``bastion keys`` and ``bastion log`` through the Typer app, on a SQLite database."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import bastion.cli.keys_cmd
import bastion.cli.log_cmd  # registers 'bastion log' on the app
from bastion.cli.app import app
from bastion.serve.audit_log import AuditLog, AuditRecord
from bastion.serve.keys import KeyStore

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gw.db'}"


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def test_keys_create_prints_the_token_once_and_list_never(db: str, tmp_path: Path) -> None:
    out = tmp_path / "key.json"
    res = invoke(
        "keys", "create", "alice", "--models", "digits,faces", "--output", "top3", "--rate", "2",
        "--burst", "4", "--daily-quota", "none", "--db", db, "--json", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(out.read_text())
    token = payload["token"]
    assert token in res.stdout and "shown once" in res.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert payload["scope"] == {
        "models": ["digits", "faces"], "output": "top3", "rate": 2.0, "burst": 4, "daily_quota": None,
    }  # fmt: skip
    key = KeyStore(db).authenticate(token)
    assert key is not None and key.key_id == payload["key_id"] and key.active

    listed = tmp_path / "list.json"
    res = invoke("keys", "list", "--db", db, "--json", str(listed))
    assert res.exit_code == 0, res.output
    assert payload["key_id"] in res.stdout and token not in res.output
    keys = json.loads(listed.read_text())["keys"]
    assert [k["key_id"] for k in keys] == [payload["key_id"]] and "token" not in keys[0]


def test_keys_revoke(db: str, tmp_path: Path) -> None:
    res = invoke("keys", "create", "bob", "--db", db, "--json", str(tmp_path / "k.json"))
    assert res.exit_code == 0, res.output
    created = json.loads((tmp_path / "k.json").read_text())
    res = invoke("keys", "revoke", created["key_id"], "--db", db, "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["active"] is False
    key = KeyStore(db).authenticate(created["token"])
    assert key is not None and not key.active
    res = invoke("keys", "list", "--db", db)
    assert "revoked" in res.stdout


def test_keys_errors_exit_2_with_one_line(db: str, tmp_path: Path) -> None:
    invoke("keys", "create", "carol", "--db", db)
    res = invoke("keys", "revoke", "0123456789abcdef", "--db", db)
    assert res.exit_code == 2 and "no API key" in res.output
    res = invoke("keys", "create", "x", "--output", "everything", "--db", db)
    assert res.exit_code == 2 and "output policy" in res.output
    res = invoke("keys", "create", "x", "--daily-quota", "lots", "--db", db)
    assert res.exit_code == 2 and "--daily-quota" in res.output
    missing = tmp_path / "absent.db"
    res = invoke("keys", "list", "--db", f"sqlite:///{missing}")
    assert res.exit_code == 2 and "no gateway database" in res.output and not missing.exists()


def _fill(db: str, n: int) -> AuditLog:
    log = AuditLog(db)
    for i in range(n):
        key = "k1" if i % 2 else "k2"
        log.append(AuditRecord(f"r{i}", key, 1_700_000_000.0 + i * 3600, "/v1/predict", "m", 200, 1, None,
                               [i], "labels", 1.0))  # fmt: skip
    return log


def test_log_verify_exit_codes(db: str) -> None:
    log = _fill(db, 6)
    res = invoke("log", "verify", "--db", db)
    assert res.exit_code == 0, res.output
    assert "6 records" in res.stdout
    with log.engine.begin() as conn:
        conn.execute(sa.text("UPDATE bastion_audit_log SET output = '[99]' WHERE seq = 4"))
    res = invoke("log", "verify", "--db", db)
    assert res.exit_code == 1
    assert "record 4" in res.output


def test_log_verify_on_a_missing_database_is_an_error(tmp_path: Path) -> None:
    res = invoke("log", "verify", "--db", str(tmp_path / "nope.db"))
    assert res.exit_code == 2 and "no gateway database" in res.output


def test_log_export(db: str, tmp_path: Path) -> None:
    _fill(db, 6)
    out = tmp_path / "all.jsonl"
    res = invoke("log", "export", "--out", str(out), "--db", db)
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["request_id"] for d in lines] == [f"r{i}" for i in range(6)]
    assert all(len(d["hash"]) == 64 for d in lines)

    some = tmp_path / "k1.jsonl"
    # records are an hour apart from 2023-11-14T22:13:20Z: since 2023-11-15T00:00 leaves r2..r5
    res = invoke(
        "log", "export", "--out", str(some), "--key", "k1", "--since", "2023-11-15T00:00", "--db", db
    )
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["request_id"] for line in some.read_text().splitlines()] == ["r3", "r5"]
    res = invoke("log", "export", "--out", str(some), "--since", "yesterday", "--db", db)
    assert res.exit_code == 2 and "--since" in res.output


def test_modules_register_their_groups() -> None:
    res = invoke("--help")
    assert "keys" in res.stdout and "log" in res.stdout
    assert bastion.cli.keys_cmd.keys_app is not None
