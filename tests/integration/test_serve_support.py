"""Shared plumbing for the gateway's process-level tests: real ``bastion serve`` processes on free ports.

Named ``test_serve_*`` so it sits with the tests it serves; it defines no tests itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.serve.keys import KeyStore, Scope
from bastion.serve.process import GatewayProcess

MODEL = "zoo:digits-cnn"
SERVED = "digits-cnn"
ROW_SHAPE = (1, 8, 8)


def make_key(db: str, name: str = "test", **scope: Any) -> tuple[str, str]:
    """A key in the store at ``db``: (key id, token)."""
    store = KeyStore(db)
    key, token = store.create(name, Scope(**scope))
    close = getattr(store, "close", None)
    if close is not None:
        close()
    return key.key_id, token


def gateway_process(
    workdir: Path, db: str, *, port: int | None = None, limits: str = "memory"
) -> GatewayProcess:
    """``bastion serve`` on the digits zoo model; :meth:`start` it (or spawn + wait_ready)."""
    return GatewayProcess.gateway(MODEL, workdir, db, port=port, limits=limits)


def predict_body(rows: int = 1, value: float = 0.5) -> dict[str, Any]:
    c, h, w = ROW_SHAPE
    row = [[[value] * w for _ in range(h)] for _ in range(c)]
    return {"model": SERVED, "inputs": [row] * rows}
