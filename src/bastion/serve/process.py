"""A gateway as a child process on a free local port: spawn, wait until ``/readyz`` answers, ``kill -9``,
stop. What integration tests and benchmarks of a deployment need (bastion's own use both), and what a
user's CI can use to put ``bastion serve`` in front of a red-team run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bastion.errors import GatewayError

__all__ = ["GatewayProcess", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """``command`` run in ``workdir`` as a server on ``port``; its output goes to ``log_path``.

    :meth:`start` again after :meth:`kill` restarts it on the same port (and database). The child gets
    ``OMP_NUM_THREADS=1`` unless ``env`` says otherwise, so several servers share a small machine fairly.
    """

    def __init__(
        self,
        command: Sequence[str],
        workdir: str | Path,
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.command, self.workdir, self.port = list(command), Path(workdir), port
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.url = f"http://127.0.0.1:{port}"
        self.ready_url = self.url + ready_path
        self.log_path = self.workdir / f"server-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @classmethod
    def gateway(
        cls,
        model: str,
        workdir: str | Path,
        db: str,
        *,
        port: int | None = None,
        limits: str = "memory",
        extra: Sequence[str] = (),
    ) -> GatewayProcess:
        """``bastion serve MODEL --port P --db DB --limits LIMITS [extra]`` with this interpreter."""
        port = port or free_port()
        command = [sys.executable, "-m", "bastion", "serve", model, "--port", str(port), "--db", db]
        return cls([*command, "--limits", limits, *extra], workdir, port)

    def spawn(self) -> GatewayProcess:
        """Start without waiting (start several at once, then :meth:`wait_ready` each)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=self.env, stdout=log, stderr=log)
        self.starts += 1
        return self

    def wait_ready(self, timeout: float = 60.0) -> GatewayProcess:
        """Return once the ready URL answers 200; :class:`GatewayError` (with the log's tail) if the
        process exits first or ``timeout`` seconds pass."""
        import httpx

        if self.proc is None:
            raise GatewayError("wait_ready() before spawn(): start the process first")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError(f"the server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(self.ready_url, timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise GatewayError(f"the server was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        return self.spawn().wait_ready(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``: no shutdown handler, no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then ``kill -9`` after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""
