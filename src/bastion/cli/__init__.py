"""The ``bastion`` command. Typer and Rich are imported only when the command runs."""

from __future__ import annotations


def main() -> None:
    from bastion.cli.app import run

    run()
