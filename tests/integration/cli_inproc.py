"""The ``bastion`` command run in this process by typer's CliRunner, returning what ``test_cli.bastion``
returns (a CompletedProcess: returncode, stdout, stderr).

A real process pays about 3 s of interpreter and torch start-up per call; the tests that are about a
command's behaviour (its files, numbers, messages and exit codes) run it here instead. What only a real
process shows (the console script, ``python -m bastion``, a kill -9 and resume, servers) keeps
``test_cli.bastion``.
"""

from __future__ import annotations

import contextlib
import subprocess
import traceback
from pathlib import Path

import typer


def _app() -> typer.Typer:
    # the same command modules that bastion.cli.app.run() imports before it runs the app
    from bastion.cli import (  # noqa: F401  (each registers its command(s))
        audit_cmd,
        certify_cmd,
        data_cmd,
        extract_cmd,
        harden_cmd,
        invert_cmd,
        keys_cmd,
        log_cmd,
        membership_cmd,
        patch_cmd,
        poison_cmd,
        scan_data_cmd,
        scan_model_cmd,
        serve_cmd,
        spatial_cmd,
        universal_cmd,
    )
    from bastion.cli.app import app

    return app


def bastion(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``bastion ARGS`` in this process (in ``cwd`` if given). An exception that escapes the command
    becomes exit code 1 with its traceback on stderr, as it would from the real entry point."""
    from typer.testing import CliRunner

    app = _app()
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        res = CliRunner().invoke(app, list(args), prog_name="bastion")
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(res.exception))
    return subprocess.CompletedProcess(["bastion", *args], res.exit_code, res.stdout, stderr)
