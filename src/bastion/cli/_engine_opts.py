"""The shard runner's command-line options, shared by the commands that run on it, and the model the
shards get (docs/engine.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = [
    "AddressOpt",
    "EngineOpt",
    "ResumeOpt",
    "ShardSizeOpt",
    "ThreadsOpt",
    "WorkersOpt",
    "shard_model",
]

PANEL = "Scale-out (docs/engine.md)"

EngineOpt = Annotated[
    str,
    typer.Option("--engine", help="local or ray: where shards run.", rich_help_panel=PANEL),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address", help="Ray cluster (default: a local one).", show_default=False, rich_help_panel=PANEL
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Ray shards in flight (default: CPUs).",
        show_default=False,
        rich_help_panel=PANEL,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="Torch threads per shard (Ray: 1).",
        show_default=False,
        rich_help_panel=PANEL,
    ),
]
ResumeOpt = Annotated[
    Path | None,
    typer.Option(
        "--resume",
        metavar="DIR",
        help="Keep shards in DIR; a rerun resumes.",
        show_default=False,
        rich_help_panel=PANEL,
    ),
]
ShardSizeOpt = Annotated[
    int,
    typer.Option(
        "--shard-size", min=1, help="Examples per shard (part of a run's identity).", rich_help_panel=PANEL
    ),
]


def shard_model(
    runner: Any, live: Any, spec: str, *, weights: str | None, mean: str | None, std: str | None, device: str
) -> Any:
    """What the shards get: ``live`` on the local engine; elsewhere a :class:`bastion.engine.ModelRef`
    (workers load the model from its files, each checked against its sha256)."""
    if runner.name == "local":
        return live
    from bastion.cli.common import parse_stats, resolve_device
    from bastion.engine import ModelRef

    return ModelRef.create(
        spec, weights=weights, bounds=live.bounds, mean=parse_stats(mean, "--mean"),
        std=parse_stats(std, "--std"), device=str(resolve_device(device)),
    )  # fmt: skip
