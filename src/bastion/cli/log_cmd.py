"""``bastion log``: verify the gateway's hash-chained audit log and export it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.app import JsonOpt, app
from bastion.cli.common import err, friendly_errors, out, write_json
from bastion.cli.keys_cmd import DB_DEFAULT
from bastion.errors import GatewayError

if TYPE_CHECKING:
    from bastion.serve.audit_log import AuditLog

log_app = typer.Typer(help="The gateway's audit log: verify its hash chain, export it.", no_args_is_help=True)
app.add_typer(log_app, name="log")

DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="BASTION_DB",
        help="Audit log: sqlite:///PATH.db, PATH.db or postgresql+psycopg://USER@HOST/DB.",
    ),
]


def open_log(db: str) -> AuditLog:
    """The audit log at ``db``; a SQLite file that is not there is an error, not a new empty log."""
    from bastion.serve.audit_log import AuditLog
    from bastion.serve.db import sqlite_path

    path = sqlite_path(db)
    if path is not None and not path.exists():
        raise GatewayError(f"no gateway database at {path}; pass --db with the gateway's database")
    return AuditLog(db)


def parse_since(text: str | None) -> float | None:
    """``--since``: an ISO date or time (``2026-12-01``, ``2026-12-01T09:30``); UTC unless it says."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise GatewayError(
            f"--since takes an ISO date or time such as 2026-12-01 or 2026-12-01T09:30:00Z, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@log_app.command("verify")
@friendly_errors
def verify(db: DbOpt = DB_DEFAULT, json_path: JsonOpt = None) -> None:
    """Recompute the audit log's hash chain. Exit code 0 when it is intact, 1 at the first record where
    it breaks (an edited, deleted, reordered or inserted record, or a truncated tail).

    Example: [bold]bastion log verify --db sqlite:///bastion-gateway.db[/]
    """
    log = open_log(db)
    result = log.verify()
    if json_path is not None:
        write_json(json_path, result._asdict(), what="verification")
    if result.ok:
        count, head = log.head()
        out.print(f"ok: {count} records, hash chain intact (head {head})", highlight=False, soft_wrap=True)
        return
    err.print(
        f"[bold red]broken:[/] at record {result.first_bad} of {result.records}: {result.reason}",
        highlight=False,
    )
    raise typer.Exit(1)


@log_app.command("export")
@friendly_errors
def export(
    out_path: Annotated[Path, typer.Option("--out", help="JSON Lines file to write.", show_default=False)],
    key: Annotated[str | None, typer.Option("--key", help="Only this key id's records.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only records from this ISO date/time on (UTC unless given)."),
    ] = None,
    db: DbOpt = DB_DEFAULT,
) -> None:
    """Export audit records as JSON Lines (one record a line, with its sequence number and hash).

    Example: [bold]bastion log export --out audit.jsonl --key 3f2a9c0d1b2e4f56 --since 2026-12-01[/]
    """
    count = open_log(db).export_jsonl(out_path, key_id=key, since=parse_since(since))
    err.print(f"{count} records written to {out_path}")
