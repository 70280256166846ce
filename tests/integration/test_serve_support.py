"""Shared plumbing for the gateway's process-level tests: real ``bastion serve`` processes on free ports.

Named ``test_serve_*`` so it sits with the tests it serves; it defines no tests itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bastion.serve.keys import KeyStore, Scope

MODEL = "zoo:digits-cnn"
SERVED = "digits-cnn"
ROW_SHAPE = (1, 8, 8)
START_TIMEOUT = 60.0  # seconds for a server to answer /readyz; importing torch on a loaded 2-core box is slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_key(db: str, name: str = "test", **scope: Any) -> tuple[str, str]:
    """A key in the store at ``db``: (key id, token)."""
    store = KeyStore(db)
    key, token = store.create(name, Scope(**scope))
    close = getattr(store, "close", None)
    if close is not None:
        close()
    return key.key_id, token


class ServerProcess:
    """One ``bastion serve MODEL`` process; :meth:`start` again after :meth:`kill` restarts it on the
    same port and database."""

    def __init__(self, workdir: Path, db: str, *, port: int | None = None, limits: str = "memory") -> None:
        self.workdir, self.db, self.limits = workdir, db, limits
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = workdir / f"serve-{self.port}.log"

    def spawn(self) -> None:
        """Start the process without waiting for it (start several at once, then :meth:`wait_ready`)."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "bastion", "serve", MODEL, "--port", str(self.port), "--db", self.db]
        command += ["--limits", self.limits]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=log, stderr=log)
        self.starts += 1

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"bastion serve exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"bastion serve not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def kill(self) -> None:
        """``kill -9``: no shutdown handler, no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def predict_body(rows: int = 1, value: float = 0.5) -> dict[str, Any]:
    c, h, w = ROW_SHAPE
    row = [[[value] * w for _ in range(h)] for _ in range(c)]
    return {"model": SERVED, "inputs": [row] * rows}
