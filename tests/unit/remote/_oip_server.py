"""A tiny Open Inference Protocol (KServe v2 REST) server for tests: stdlib http.server in a thread.

Serves one torch classifier on 127.0.0.1 at a free port. Knobs for failure tests: ``fail_first`` answers
the first N inference requests with ``fail_status``; ``delay`` sleeps before answering inferences;
``token`` answers inferences 401 unless they carry that bearer token. Every
request is logged as ``(monotonic time, method, path, rows)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch


@dataclass
class ServerConfig:
    model: Callable[[Any], torch.Tensor]  # a tensor model, or a text model (list of strings) with BYTES
    name: str = "digits"
    row_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int = 10
    outputs: str = "logits"  # or "probabilities": the server applies softmax
    input_name: str = "input-0"
    datatype: str = "FP32"  # or "BYTES": a text model, its input a [n] tensor of strings
    fail_first: int = 0
    fail_status: int = 503
    delay: float = 0.0
    token: str | None = None  # when set, inference requests need "Authorization: Bearer <token>"
    parameters: dict[str, Any] | None = None  # the metadata's "parameters" (as a bastion gateway states)
    log: list[tuple[float, str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    config: ServerConfig  # set on a subclass per server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def _record(self, rows: int = 0) -> int:
        with self.config.lock:
            self.config.log.append((time.monotonic(), self.command, self.path, rows))
            return sum(1 for _, method, _, _ in self.config.log if method == "POST")

    def do_GET(self) -> None:
        self._record()
        cfg = self.config
        model_path = f"/v2/models/{cfg.name}"
        if self.path in ("/v2/health/ready", "/v2/health/live", f"{model_path}/ready"):
            self._send(200, {"ready": True} if "ready" in self.path else {"live": True})
        elif self.path == model_path:
            self._send(
                200,
                {
                    "name": cfg.name,
                    "versions": ["1"],
                    "platform": "pytorch",
                    "inputs": [
                        {"name": cfg.input_name, "datatype": cfg.datatype, "shape": [-1, *cfg.row_shape]}
                    ],
                    "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, cfg.num_classes]}],
                    **({"parameters": cfg.parameters} if cfg.parameters is not None else {}),
                },
            )
        else:
            self._send(404, {"error": f"no model at {self.path}"})

    def do_POST(self) -> None:
        cfg = self.config
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path != f"/v2/models/{cfg.name}/infer":
            self._record()
            self._send(404, {"error": f"model {self.path.split('/')[3]!r} not found"})
            return
        if cfg.token is not None and self.headers.get("Authorization") != f"Bearer {cfg.token}":
            self._record()
            self._send(401, {"error": "missing or wrong API key"})
            return
        inp = body["inputs"][0]
        shape = inp["shape"]
        seen = self._record(shape[0])
        if seen <= cfg.fail_first:
            self._send(cfg.fail_status, {"error": "temporarily unavailable"})
            return
        if cfg.delay:
            time.sleep(cfg.delay)
        if inp["name"] != cfg.input_name or list(shape[1:]) != list(cfg.row_shape):
            self._send(400, {"error": f"expected input {cfg.input_name!r} of shape [-1, {cfg.row_shape}]"})
            return
        if inp.get("datatype", "FP32") != cfg.datatype:
            self._send(400, {"error": f"expected {cfg.datatype}, got {inp.get('datatype')}"})
            return
        if cfg.datatype == "BYTES":
            x: Any = [str(t) for t in inp["data"]]
        else:
            x = torch.tensor(inp["data"], dtype=torch.float32).reshape(shape)
        with torch.no_grad():
            out = cfg.model(x)
            if cfg.outputs == "probabilities":
                out = torch.softmax(out, dim=1)
        self._send(
            200,
            {
                "model_name": cfg.name,
                "outputs": [
                    {
                        "name": "output-0",
                        "shape": list(out.shape),
                        "datatype": "FP32",
                        "data": out.flatten().tolist(),
                    }
                ],
            },
        )


@dataclass
class Running:
    config: ServerConfig
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spec(self, name: str | None = None) -> str:
        return f"oip:{self.base}/models/{name or self.config.name}"

    def posts(self) -> list[tuple[float, str, str, int]]:
        with self.config.lock:
            return [r for r in self.config.log if r[1] == "POST"]


@contextmanager
def serve(model: Callable[[torch.Tensor], torch.Tensor], **options: Any) -> Iterator[Running]:
    """Serve ``model`` until the block ends; yields the port, the config (its log) and spec helpers."""
    config = ServerConfig(model=model, **options)
    handler = type("Handler", (_Handler,), {"config": config})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(config, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
