"""Abuse leaves the gateway serving others: while slow clients dribble bodies, huge bodies arrive, invalid
keys knock and malformed JSON is posted, a real ``bastion serve`` process keeps answering a well-behaved
client, refuses every abuser with the right 4xx, and never answers 5xx."""

from __future__ import annotations

import json
import random
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
from test_serve_support import gateway_process, make_key, predict_body

SLOW_CLIENTS = 12
ABUSE_SECONDS = 6.0


def _slow_client(port: int, token: str, stop: threading.Event, opened: list[int]) -> None:
    """Headers promising a large body, then one byte every half second (slowloris)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    with sock:
        head = (
            "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
        )
        try:
            sock.sendall(head.encode())
            opened.append(1)
            while not stop.wait(0.5):
                sock.sendall(b" ")
        except OSError:  # the server may close a connection it finds too slow: that is fine
            pass


def _abuse(url: str, token: str, stop: threading.Event, statuses: list[int]) -> None:
    """Huge bodies, unknown keys and malformed JSON in a loop, recording every status."""
    rng = random.Random(0)
    huge = b"[" + b"0.5," * 3_000_000 + b"0.5]"  # ~12 MB, over the default 8 MB body limit
    with httpx.Client(base_url=url, timeout=30.0) as client:
        while not stop.is_set():
            kind = rng.choice(("huge", "key", "json"))
            try:
                if kind == "huge":
                    r = client.post("/v1/predict", content=huge, headers={"Authorization": f"Bearer {token}"})
                elif kind == "key":
                    bad = f"bst_{rng.getrandbits(64):x}_{rng.getrandbits(128):x}"
                    r = client.post(
                        "/v1/predict", json=predict_body(), headers={"Authorization": f"Bearer {bad}"}
                    )
                else:
                    r = client.post(
                        "/v1/predict",
                        content=b'{"model": "digits-cnn", "inputs": [[0.5,',
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    )
                statuses.append(r.status_code)
            except httpx.TransportError:  # the server may cut a huge upload short after its 413
                statuses.append(-1)


def test_abusers_do_not_stop_the_gateway_serving_others(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    _, good = make_key(db, "good", output="probs", rate=1000.0, burst=1000, daily_quota=None)
    _, abuser = make_key(db, "abuser", output="probs", rate=1000.0, burst=1000, daily_quota=None)
    server = gateway_process(tmp_path, db)
    server.start()
    stop = threading.Event()
    opened: list[int] = []
    statuses: list[int] = []
    threads = [
        threading.Thread(target=_slow_client, args=(server.port, abuser, stop, opened), daemon=True)
        for _ in range(SLOW_CLIENTS)
    ]
    threads += [
        threading.Thread(target=_abuse, args=(server.url, abuser, stop, statuses), daemon=True)
        for _ in range(2)
    ]
    try:
        for t in threads:
            t.start()
        latencies, answers = [], []
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            headers = {"Authorization": f"Bearer {good}"}
            deadline = time.monotonic() + ABUSE_SECONDS
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                r = client.post("/v1/predict", json=predict_body(rows=2), headers=headers)
                latencies.append(time.perf_counter() - t0)
                answers.append(r.status_code)
                time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        assert server.proc is not None and server.proc.poll() is None, server.log_tail()
    finally:
        stop.set()
        server.stop()
    assert len(opened) == SLOW_CLIENTS  # every slow client got its connection
    assert answers and set(answers) == {200}, answers
    assert statistics.median(latencies) < 1.0 and max(latencies) < 5.0, latencies
    refused = [s for s in statuses if s != -1]
    assert refused, "the abusers never got an answer"
    assert set(refused) <= {400, 401, 413}, sorted(set(refused))  # each abuse refused with its 4xx
    assert not [s for s in statuses if s >= 500]
    assert "Traceback" not in server.log_tail(100_000)
    json.dumps(statuses)  # plain ints
