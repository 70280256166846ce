"""Alerts: to the log always, and to a webhook when one is configured (``alert_webhook``).

:meth:`Alerter.alert` never blocks and never raises: the log line is written at once, the webhook POST
(JSON ``{"source", "kind", "message", "time", "details"}``) is queued for one background thread that sends
with a timeout. A failed or refused POST is logged and dropped (no retries: an alert that arrives minutes
late is noise, and the log has it anyway); a full queue drops the new alert, logged. The webhook URL may
hold a secret (chat webhooks do), so only its host is ever logged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from bastion.serve.metrics import Metrics

__all__ = ["Alerter"]

logger = logging.getLogger(__name__)


class Alerter:
    """Alerts of kinds such as ``"drift"`` and ``"detection"`` to the log and, if ``webhook`` is an
    http(s) URL, POSTed there by a background thread (``timeout`` seconds per POST)."""

    def __init__(
        self,
        webhook: str | None = None,
        *,
        timeout: float = 5.0,
        max_queue: int = 1000,
        metrics: Metrics | None = None,
        source: str = "bastion-gateway",
    ) -> None:
        self.webhook, self.timeout, self.metrics, self.source = webhook, timeout, metrics, source
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.sent = self.failed = self.dropped = 0

    @property
    def _where(self) -> str:
        return urlsplit(self.webhook or "").netloc or "?"

    def alert(self, kind: str, message: str, **details: Any) -> None:
        """Log the alert and queue it for the webhook; returns at once."""
        logger.warning("ALERT [%s] %s", kind, message)
        if self.metrics is not None:
            self.metrics.alerts.labels(kind).inc()
        if self.webhook is None:
            return
        payload = {"source": self.source, "kind": kind, "message": message, "time": time.time()}
        payload["details"] = details
        self._start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self.dropped += 1
            logger.error("alert queue full; a %s alert was not sent to the webhook at %s", kind, self._where)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bastion-alerts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while (payload := self._queue.get()) is not None:
                try:
                    response = client.post(self.webhook or "", json=payload)
                    if response.status_code >= 400:
                        raise RuntimeError(f"HTTP {response.status_code}")
                    self.sent += 1
                except Exception as exc:  # a webhook down must not take anything else with it
                    self.failed += 1
                    logger.warning(
                        "alert webhook at %s failed (%s); the alert is only in the log", self._where, exc
                    )
                finally:
                    self._queue.task_done()
        self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the queued alerts are sent or failed (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Deliver what is queued (each POST within its timeout), then stop the thread."""
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=self.timeout)
            except queue.Full:  # the thread is stuck on a full queue; it is a daemon, let it go
                logger.error("alert webhook at %s: undelivered alerts dropped at shutdown", self._where)
            self._thread.join(timeout=self.timeout * 2 + 1)
            self._thread = None
