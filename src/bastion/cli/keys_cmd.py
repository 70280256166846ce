"""``bastion keys``: create, list and revoke the gateway's API keys."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from bastion.cli.app import JsonOpt, app
from bastion.cli.common import err, friendly_errors, out, write_json
from bastion.errors import GatewayError

if TYPE_CHECKING:
    from bastion.serve.keys import ApiKey, KeyStore

keys_app = typer.Typer(
    help="API keys for 'bastion serve': shown once at creation, stored hashed, scoped, revocable.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

DB_DEFAULT = "sqlite:///bastion-gateway.db"  # bastion.serve.db.DEFAULT_DB, without importing SQLAlchemy here
DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="BASTION_DB",
        help="Key store: sqlite:///PATH.db, PATH.db or postgresql+psycopg://USER@HOST/DB.",
    ),
]


def open_store(db: str, *, must_exist: bool) -> KeyStore:
    """The key store at ``db``; with ``must_exist`` a SQLite file that is not there is an error rather
    than a new empty database (a typo in --db must not look like 'no keys')."""
    from bastion.serve.db import sqlite_path
    from bastion.serve.keys import KeyStore

    path = sqlite_path(db)
    if must_exist and path is not None and not path.exists():
        raise GatewayError(f"no gateway database at {path}; pass --db (or create a key first)")
    return KeyStore(db)


def _quota(text: str) -> int | None:
    if text.strip().lower() in ("none", "unlimited"):
        return None
    try:
        return int(text)
    except ValueError:
        raise GatewayError(
            f"--daily-quota takes a whole number of input rows or 'none', got {text!r}"
        ) from None


def _when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(keys: list[ApiKey]) -> Table:
    table = Table()
    # the id is what users copy into 'revoke' and grep in logs: never wrapped or cut
    table.add_column("key id", no_wrap=True, min_width=16)
    for title in ("name", "scope", "status"):
        table.add_column(title)
    for k in keys:
        s = k.scope
        quota = "no quota" if s.daily_quota is None else f"{s.daily_quota} rows/day"
        scope = f"{','.join(s.models)} · {s.output} · {s.rate:g}/s burst {s.burst} · {quota}"
        if s.on_input_flag != "flag":
            scope += f" · {s.on_input_flag} flagged inputs"
        status = "active" if k.active else f"revoked {_when(k.revoked)}"
        table.add_row(k.key_id, k.name, scope, status)
    return table


@keys_app.command("create")
@friendly_errors
def create(
    name: Annotated[str, typer.Argument(help="A name for whom the key is for (shown in lists and logs).")],
    models: Annotated[
        str, typer.Option("--models", help="Models the key may query, separated by commas; '*' for all.")
    ] = "*",
    output: Annotated[
        str,
        typer.Option("--output", help="What the key is answered: labels, topK, roundD, probs..."),
    ] = "labels",
    rate: Annotated[float, typer.Option("--rate", help="Requests per second (token-bucket refill).")] = 5.0,
    burst: Annotated[int, typer.Option("--burst", help="Requests allowed at once (bucket size).")] = 10,
    daily_quota: Annotated[
        str, typer.Option("--daily-quota", help="Input rows per UTC day, or 'none' for no quota.")
    ] = "10000",
    on_input_flag: Annotated[
        str,
        typer.Option(
            "--on-input-flag",
            help="When an in-line input detector flags a row: 'flag' (answer, record the flag) "
            "or 'reject' (refuse the request, 422).",
        ),
    ] = "flag",
    db: DbOpt = DB_DEFAULT,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the key AND its token as JSON to this file (mode 0600)."),
    ] = None,
) -> None:
    """Create a key and print its token once: it is not stored anywhere, keep it now.

    Example: [bold]bastion keys create alice --models digits --output top3 --rate 2 --daily-quota 5000[/]
    """
    from bastion.serve.keys import Scope

    scope = Scope(
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        output=output,
        rate=rate,
        burst=burst,
        daily_quota=_quota(daily_quota),
        on_input_flag=on_input_flag.strip().lower(),
    )
    key, token = open_store(db, must_exist=False).create(name, scope)
    out.print(_table([key]))
    out.print(token, highlight=False, soft_wrap=True)
    err.print(
        "[yellow]warning:[/] this token is shown once and is not stored (only its hash is); keep it now. "
        f"Revoke it with: bastion keys revoke {key.key_id}",
        highlight=False,
    )
    if json_path is not None:
        write_json(json_path, {**key.to_dict(), "token": token}, what="key and token")
        os.chmod(json_path, 0o600)


@keys_app.command("list")
@friendly_errors
def list_keys(db: DbOpt = DB_DEFAULT, json_path: JsonOpt = None) -> None:
    """List the keys (ids, names, scopes, status); never their tokens."""
    keys = open_store(db, must_exist=True).list()
    if keys:
        out.print(_table(keys))
    else:
        err.print("no keys yet; create one with: bastion keys create NAME")
    if json_path is not None:
        write_json(json_path, _payload(keys), what="keys")


@keys_app.command("revoke")
@friendly_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (see 'bastion keys list').")],
    db: DbOpt = DB_DEFAULT,
    json_path: JsonOpt = None,
) -> None:
    """Revoke a key for good: its requests are refused (403) from now on."""
    key = open_store(db, must_exist=True).revoke(key_id)
    out.print(f"revoked {key.key_id} ({key.name}) at {_when(key.revoked)}", highlight=False)
    if json_path is not None:
        write_json(json_path, key.to_dict(), what="key")


def _payload(keys: list[ApiKey]) -> dict[str, Any]:
    return {"generated": time.time(), "keys": [k.to_dict() for k in keys]}
