"""A tiny local webhook for the gateway's alert tests: records the JSON bodies POSTed to it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hook:
    """A tiny HTTP server that records the JSON bodies POSTed to it (optionally slow or failing)."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.status, self.delay = status, delay
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(hook.delay)
                hook.bodies.append({"json": json.loads(body), "type": self.headers["Content-Type"]})
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
