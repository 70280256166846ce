"""Alerts: logged always; POSTed as JSON to a real local webhook by a background thread that never
blocks the caller; a webhook that fails or hangs is logged, never raised."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from _webhook import Hook

from bastion.serve.alerts import Alerter
from bastion.serve.metrics import Metrics


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def test_alert_is_logged_and_posted_as_json(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    alerter = Alerter(hook.url, metrics=metrics)
    with caplog.at_level(logging.WARNING, "bastion.serve.alerts"):
        alerter.alert("drift", "inputs moved", model="digits", statistic=0.5)
        alerter.alert("detection", "key k flagged", key_id="k")
    alerter.flush()
    alerter.close()
    assert [b["json"]["kind"] for b in hook.bodies] == ["drift", "detection"]
    first = hook.bodies[0]
    assert first["type"] == "application/json"
    assert first["json"]["message"] == "inputs moved" and first["json"]["source"] == "bastion-gateway"
    assert first["json"]["details"] == {"model": "digits", "statistic": 0.5}
    assert abs(first["json"]["time"] - time.time()) < 60
    assert "ALERT [drift] inputs moved" in caplog.text
    assert alerter.sent == 2 and alerter.failed == 0
    assert metrics.alerts.labels("drift")._value.get() == 1


def test_a_slow_webhook_never_blocks_the_caller() -> None:
    slow = Hook(delay=0.3)
    alerter = Alerter(slow.url, timeout=5.0)
    start = time.perf_counter()
    for i in range(5):
        alerter.alert("detection", f"flag {i}")
    assert time.perf_counter() - start < 0.2  # five POSTs take 1.5 s
    alerter.flush(timeout=20)
    assert len(slow.bodies) == 5
    alerter.close()
    slow.close()


def test_failing_webhooks_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    refusing = Hook(status=500)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/hook?token=s3cret"
    with caplog.at_level(logging.WARNING, "bastion.serve.alerts"):
        for url in (refusing.url, closed):
            alerter = Alerter(url, timeout=2.0)
            alerter.alert("drift", "x")
            alerter.flush()
            alerter.close()
            assert alerter.failed == 1 and alerter.sent == 0
    assert "HTTP 500" in caplog.text and "only in the log" in caplog.text
    assert "secret-token" not in caplog.text and "s3cret" not in caplog.text  # only the host is logged
    assert len(refusing.bodies) == 1
    refusing.close()


def test_without_a_webhook_alerts_only_log(caplog: pytest.LogCaptureFixture) -> None:
    alerter = Alerter()
    with caplog.at_level(logging.WARNING, "bastion.serve.alerts"):
        alerter.alert("drift", "only here")
    alerter.close()
    assert "only here" in caplog.text and alerter._thread is None
