"""The shard runner's command-line options, shared by the commands that run on it (``evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["AddressOpt", "EngineOpt", "ResumeOpt", "ShardSizeOpt", "ThreadsOpt", "WorkersOpt"]

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where the shards run: 'local' (this process) or 'ray' (one Ray task per shard; "
        "pip install 'bastion[ray]'). Results are the same on either, and on any number of workers.",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --engine ray: a running cluster ('auto', 'ray://HOST:10001'); default: start a local "
        "one for this run.",
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="With --engine ray: shards in flight at once (default: the CPU count).",
        show_default=False,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="Torch threads per shard (default: torch's own on --engine local, 1 per Ray worker). Equal "
        "thread counts make results bit-identical across engines.",
        show_default=False,
    ),
]
ResumeOpt = Annotated[
    Path | None,
    typer.Option(
        "--resume",
        metavar="DIR",
        help="Keep each finished shard in DIR (atomically, with its sha256); run the same command with the "
        "same DIR after an interruption and finished shards are read back, not redone.",
        show_default=False,
    ),
]
ShardSizeOpt = Annotated[
    int,
    typer.Option("--shard-size", min=1, help="Examples per shard (part of a run's identity for --resume)."),
]
