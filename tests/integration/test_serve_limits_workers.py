"""Rate limits shared by several gateway processes through Redis: one key limited to R requests per
second, hammered through two ``bastion serve`` processes (same Redis, same database) for a few seconds,
is allowed burst + R x t requests in all — not twice that.

``bastion serve`` has no ``--workers`` option yet, so the two workers are two processes on two ports;
uvicorn workers share the same limiter the same way (one Redis bucket per key)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from test_serve_support import gateway_process, make_key, predict_body

from bastion.serve.process import free_port

REDIS = "redis://127.0.0.1:6379/0"
RATE = 5.0
BURST = 5
SECONDS = 4.0
THREADS_PER_SERVER = 2


def _redis_missing() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except Exception as e:  # any failure means: no Redis to test against
        return f"no Redis at {REDIS} ({type(e).__name__}); start one to run the shared-limit test"
    return None


pytestmark = pytest.mark.skipif(_redis_missing() is not None, reason=str(_redis_missing()))


def hammer(url: str, token: str, until: float, results: list[tuple[float, int, str]]) -> None:
    """Send requests back to back until ``until``; append (send time, status, server) for each."""
    with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=10.0) as client:
        while (now := time.monotonic()) < until:
            r = client.post("/v1/predict", json=predict_body())
            results.append((now, r.status_code, url))
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1


def test_two_workers_on_redis_share_one_bucket_per_key(tmp_path: Path) -> None:
    import redis

    db = f"sqlite:///{tmp_path / 'gw.db'}"
    key_id, token = make_key(db, rate=RATE, burst=BURST, daily_quota=None)
    servers = [gateway_process(tmp_path, db, port=free_port(), limits=REDIS) for _ in range(2)]
    client = redis.Redis.from_url(REDIS)
    try:
        for s in servers:  # started together: each imports torch and loads the model
            s.spawn()
        for s in servers:
            s.wait_ready()
        results: list[tuple[float, int, str]] = []
        until = time.monotonic() + SECONDS
        threads = [
            threading.Thread(target=hammer, args=(s.url, token, until, results))
            for s in servers
            for _ in range(THREADS_PER_SERVER)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 30)
    finally:
        for s in servers:
            s.stop()
        client.delete(f"bastion:bucket:{key_id}", f"bastion:quota:{key_id}")
        client.close()

    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    allowed = statuses[200]
    elapsed = max(t for t, _, _ in results) - min(t for t, _, _ in results)
    expected = BURST + RATE * elapsed
    per_server = Counter(url for _, status, url in results if status == 200)
    print(
        f"\n2 processes on Redis, {len(results)} requests in {elapsed:.2f} s: {allowed} allowed "
        f"(burst {BURST} + {RATE:g}/s x t = {expected:.1f}), per process {sorted(per_server.values())}"
    )
    assert statuses[429] > allowed, "the test did not push the key past its limit"
    assert len(per_server) == 2, "one process answered nothing: the sharing was not exercised"
    assert abs(allowed - expected) <= 2, (allowed, expected)
