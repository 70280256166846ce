"""Rate limits and quotas: known answers for the token bucket with an injected clock, the global bucket,
UTC-day quotas, refusals that cost nothing, bounded memory; and the same against a real Redis, including
several processes hammering one key (the budget is shared, not multiplied per worker)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from bastion.errors import GatewayError
from bastion.serve.limits import Decision, MemoryLimiter, RedisLimiter, limiter_for

REDIS_URL = "redis://127.0.0.1:6379/0"
# Dyadic times and rates: every refill is exact in binary floating point, so the answers are exact too.
T0 = 1_700_000_000.0
TICK = 1 / 256


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------------------------------------- memory


def test_burst_then_exactly_rate_per_second() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    allowed_at: list[float] = []
    for i in range(10 * 256 + 1):  # every 1/256 s for 10 s, both ends included, ask until refused
        clock.now = T0 + i * TICK
        while lim.check("k", rate=4, burst=5, daily_quota=None).allowed:
            allowed_at.append(clock.now - T0)
    assert len(allowed_at) == 5 + 40
    assert allowed_at[:5] == [0.0] * 5
    # then one every 1/rate seconds, on the dot
    assert allowed_at[5:] == [0.25 * k for k in range(1, 41)]


def test_retry_after_is_exact() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    for _ in range(3):
        assert lim.check("k", rate=4, burst=3, daily_quota=None) == Decision(True, 0.0, "")
    refused = lim.check("k", rate=4, burst=3, daily_quota=None)
    assert refused == Decision(False, 0.25, "rate")
    clock.now = T0 + refused.retry_after - TICK
    assert not lim.check("k", rate=4, burst=3, daily_quota=None).allowed
    clock.now = T0 + refused.retry_after
    assert lim.check("k", rate=4, burst=3, daily_quota=None).allowed


def test_no_burst_at_window_edges() -> None:
    # drained just before a second (and a minute, and a day) boundary: just after it, nothing new
    for edge in (60.0, 3600.0, 86_400.0):
        clock = Clock(T0 + edge - 0.001)
        lim = MemoryLimiter(clock=clock)
        assert sum(lim.check("k", 1.0, 10, None).allowed for _ in range(20)) == 10
        clock.now = T0 + edge + 0.001
        assert sum(lim.check("k", 1.0, 10, None).allowed for _ in range(20)) == 0

    # random traffic bunched around boundaries: no span of s seconds ever holds more than burst + rate*s
    rng = random.Random(0)
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    rate, burst = 3.0, 6
    times = sorted(T0 + k + rng.uniform(-0.05, 0.05) for k in range(1, 30) for _ in range(15))
    allowed_at = []
    for t in times:
        clock.now = t
        if lim.check("k", rate, burst, None).allowed:
            allowed_at.append(t)
    assert len(allowed_at) >= 0.9 * (burst + rate * (allowed_at[-1] - allowed_at[0]))
    for i in range(len(allowed_at)):
        for j in range(i + 1, len(allowed_at)):
            assert j - i + 1 <= burst + rate * (allowed_at[j] - allowed_at[i]) + 1e-9


def test_global_bucket_is_shared_across_keys() -> None:
    clock = Clock()
    lim = MemoryLimiter(global_rate=1.0, global_burst=3, clock=clock)
    got = [lim.check(f"key{i}", rate=100, burst=100, daily_quota=None) for i in range(5)]
    assert [d.allowed for d in got] == [True, True, True, False, False]
    assert got[3] == Decision(False, 1.0, "global")
    clock.now = T0 + 1.0
    assert lim.check("key9", 100, 100, None).allowed
    assert lim.check("key0", 100, 100, None) == Decision(False, 1.0, "global")


def test_global_rate_without_burst_gets_one_second() -> None:
    lim = MemoryLimiter(global_rate=2.5, clock=Clock())
    assert sum(lim.check(f"k{i}", 100, 100, None).allowed for i in range(10)) == 3


def test_refused_requests_cost_nothing() -> None:
    clock = Clock()
    lim = MemoryLimiter(global_rate=1.0, global_burst=1, clock=clock)
    slow = dict(rate=1 / 1024, burst=2, daily_quota=None)
    assert lim.check("a", **slow).allowed  # a: 1 token left, global: 0
    assert lim.check("a", **slow) == Decision(False, 1.0, "global")  # the global refusal costs a nothing
    clock.now = T0 + 1.0
    assert lim.check("a", **slow).allowed  # a's second token
    # a is now empty (1024 s away) and the global bucket too (1 s away): the longer wait is reported
    d = lim.check("a", **slow)
    assert (d.allowed, d.reason) == (False, "rate") and d.retry_after == pytest.approx(1024 - 0, abs=1.0)
    clock.now = T0 + 2.0
    assert not lim.check("a", **slow).allowed  # a's refusal did not take the global token ...
    assert lim.check("b", 100, 100, None).allowed  # ... b gets it

    # a quota refusal costs no token, and a rate refusal costs no quota
    q = MemoryLimiter(clock=clock)
    assert q.check("c", 1 / 1024, 2, daily_quota=5, rows=4).allowed
    assert q.check("c", 1 / 1024, 2, daily_quota=5, rows=2).reason == "quota"
    assert q.check("c", 1 / 1024, 2, daily_quota=5, rows=1).allowed  # the token the refusal left
    assert q.check("c", 1 / 1024, 2, daily_quota=6, rows=1).reason == "rate"
    clock.now += 1024
    assert q.check("c", 1 / 1024, 2, daily_quota=6, rows=1).allowed  # the quota the refusal left


def test_quota_counts_rows_and_resets_at_utc_midnight() -> None:
    midnight = datetime(2025, 3, 2, tzinfo=UTC).timestamp()
    clock = Clock(midnight - 10.0)
    lim = MemoryLimiter(clock=clock)
    assert lim.check("k", 100, 100, daily_quota=5, rows=3).allowed
    assert lim.check("k", 100, 100, daily_quota=5, rows=2).allowed
    d = lim.check("k", 100, 100, daily_quota=5, rows=1)
    assert (d.allowed, d.reason) == (False, "quota") and d.retry_after == pytest.approx(10.0)
    clock.now = midnight - 1e-3
    assert not lim.check("k", 100, 100, daily_quota=5, rows=1).allowed
    clock.now = midnight
    assert lim.check("k", 100, 100, daily_quota=5, rows=5).allowed
    assert lim.check("k", 100, 100, daily_quota=5, rows=1).reason == "quota"
    assert lim.check("other", 100, 100, daily_quota=5, rows=5).allowed  # quotas are per key


def test_memory_is_bounded_and_keeps_recent_keys() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock, max_keys=50)
    for _ in range(3):
        assert lim.check("hot", rate=1 / 1024, burst=3, daily_quota=None).allowed
    for i in range(5_000):
        clock.now = T0 + i * TICK
        lim.check(f"k{i}", rate=1.0, burst=1, daily_quota=None)
        if i % 10 == 0:  # the hot key stays recent, so its drained bucket is not forgotten
            assert not lim.check("hot", rate=1 / 1024, burst=3, daily_quota=None).allowed
        assert len(lim) <= 50
    assert len(lim) == 50


def test_thread_safe_under_contention() -> None:
    lim = MemoryLimiter(global_rate=1.0, global_burst=60, clock=Clock())  # frozen clock: no refill
    counts = [0] * 4

    def worker(n: int) -> None:
        for _ in range(2_000):
            counts[n] += lim.check(f"k{n % 2}", rate=1.0, burst=40, daily_quota=None).allowed

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 60  # two keys of 40 each, capped by the global 60, not one more


def test_invalid_arguments_are_named() -> None:
    lim = MemoryLimiter()
    with pytest.raises(GatewayError, match="rate"):
        lim.check("k", rate=0, burst=1, daily_quota=None)
    with pytest.raises(GatewayError, match="burst"):
        lim.check("k", rate=1, burst=0, daily_quota=None)
    with pytest.raises(GatewayError, match="daily_quota"):
        lim.check("k", rate=1, burst=1, daily_quota=-1)
    with pytest.raises(GatewayError, match="global_rate"):
        MemoryLimiter(global_burst=5)
    with pytest.raises(GatewayError, match="global rate"):
        MemoryLimiter(global_rate=math.inf)


def test_limiter_for() -> None:
    assert isinstance(limiter_for(None), MemoryLimiter)
    assert isinstance(limiter_for("memory", 5.0, 10), MemoryLimiter)
    with pytest.raises(GatewayError, match="memory"):
        limiter_for("postgresql://x")


def test_unreachable_redis_is_one_clear_line() -> None:
    with pytest.raises(GatewayError) as err:
        limiter_for("redis://:hunter2@127.0.0.1:1/0")
    msg = str(err.value)
    assert "127.0.0.1:1" in msg and 'limits = "memory"' in msg and "\n" not in msg
    assert "hunter2" not in msg


# ------------------------------------------------------------------------------------------------ redis


@pytest.fixture
def redis_prefix():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0)
    try:
        client.ping()
    except redis.exceptions.RedisError as e:
        pytest.skip(f"no Redis at {REDIS_URL} ({e})")
    prefix = f"bastion-test:{uuid.uuid4().hex}:"
    yield client, prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def _hammer(lim: RedisLimiter, key: str, seconds: float, **limits) -> tuple[int, float]:
    allowed, start = 0, time.time()
    while time.time() - start < seconds:
        allowed += lim.check(key, **limits).allowed
    return allowed, time.time() - start


def test_redis_known_answers(redis_prefix) -> None:
    client, prefix = redis_prefix
    default = limiter_for(REDIS_URL)
    assert isinstance(default, RedisLimiter)
    default.close()
    lim = RedisLimiter(REDIS_URL, prefix=prefix)
    first = [lim.check("k", rate=20, burst=5, daily_quota=None) for _ in range(6)]
    assert all(d == Decision(True, 0.0, "") for d in first[:5])
    assert (first[5].allowed, first[5].reason) == (False, "rate") and 0 < first[5].retry_after <= 0.05

    allowed, elapsed = _hammer(lim, "k2", 1.5, rate=20, burst=5, daily_quota=None)
    ceiling = 5 + 20 * elapsed
    assert 0.9 * ceiling <= allowed <= ceiling + 1

    # the bucket expires once it would have refilled: an absent bucket reads as full
    ttl = client.pttl(f"{prefix}bucket:k2")
    assert 0 < ttl <= math.ceil(5 / 20 * 1000) + 1000
    lim.close()


def test_redis_global_and_refusals_cost_nothing(redis_prefix) -> None:
    client, prefix = redis_prefix
    lim = RedisLimiter(REDIS_URL, global_rate=1 / 100, global_burst=2, prefix=prefix)
    assert lim.check("a", 100, 100, None).allowed
    assert lim.check("b", 100, 100, None).allowed
    d = lim.check("c", 100, 100, None)
    assert (d.allowed, d.reason) == (False, "global") and 99 < d.retry_after <= 100
    assert not client.exists(f"{prefix}bucket:c")  # the refusal wrote nothing

    # a second limiter (another worker) on the same prefix sees the same, drained, global bucket
    other = RedisLimiter(REDIS_URL, global_rate=1 / 100, global_burst=2, prefix=prefix)
    assert other.check("d", 100, 100, None).reason == "global"
    # ... and one on another prefix is isolated from it
    assert (
        RedisLimiter(REDIS_URL, global_rate=1 / 100, global_burst=2, prefix=prefix + "x:")
        .check("d", 100, 100, None)
        .allowed
    )


def test_redis_quota_until_utc_midnight(redis_prefix) -> None:
    client, prefix = redis_prefix
    lim = RedisLimiter(REDIS_URL, prefix=prefix)
    assert lim.check("k", 100, 100, daily_quota=3, rows=2).allowed
    d = lim.check("k", 100, 100, daily_quota=3, rows=2)
    to_midnight = 86_400 - time.time() % 86_400
    assert (d.allowed, d.reason) == (False, "quota") and d.retry_after == pytest.approx(to_midnight, abs=2)
    assert lim.check("k", 100, 100, daily_quota=3, rows=1).allowed  # the refusal cost no quota
    assert 0 < client.pttl(f"{prefix}quota:k") <= (to_midnight + 61) * 1000


def test_redis_reloads_a_flushed_script(redis_prefix) -> None:
    client, prefix = redis_prefix
    lim = RedisLimiter(REDIS_URL, prefix=prefix)
    assert lim.check("k", 1, 2, None).allowed
    client.script_flush()
    assert lim.check("k", 1, 2, None).allowed
    assert lim.check("k", 1, 2, None).reason == "rate"


_WORKER = """
import json, sys, time
from bastion.serve.limits import RedisLimiter
cfg = json.loads(sys.argv[1])
lim = RedisLimiter(cfg["url"], cfg["global_rate"], cfg["global_burst"], prefix=cfg["prefix"])
print("ready", flush=True)
sys.stdin.readline()
allowed = calls = 0
start = time.time()
while time.time() - start < cfg["seconds"]:
    allowed += lim.check(cfg["key"], cfg["rate"], cfg["burst"], None).allowed
    calls += 1
print(json.dumps({"allowed": allowed, "calls": calls, "start": start, "end": time.time()}), flush=True)
"""


def _processes(n: int, **cfg) -> tuple[int, int, float]:
    """n processes hammer the limiter together; total allowed, total calls, and the span they covered."""
    procs = []
    for i in range(n):
        worker_cfg = {**cfg, "key": cfg["key"].format(i=i)}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, json.dumps(worker_cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:  # all start within a millisecond or so of each other
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.communicate(timeout=30)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return sum(r["allowed"] for r in results), sum(r["calls"] for r in results), span


def test_redis_is_exact_across_processes_on_one_key(redis_prefix) -> None:
    _, prefix = redis_prefix
    rate, burst = 50.0, 10
    allowed, calls, span = _processes(
        4,
        url=REDIS_URL,
        prefix=prefix,
        key="shared",
        rate=rate,
        burst=burst,
        global_rate=None,
        global_burst=None,
        seconds=2.0,
    )
    ceiling = burst + rate * span
    assert calls > 4 * ceiling  # the workers really did compete for it
    assert 0.9 * ceiling <= allowed <= ceiling + 1, (allowed, ceiling)


def test_redis_global_is_exact_across_processes_and_keys(redis_prefix) -> None:
    _, prefix = redis_prefix
    g_rate, g_burst = 40.0, 8
    allowed, calls, span = _processes(
        4,
        url=REDIS_URL,
        prefix=prefix,
        key="key{i}",
        rate=1000.0,
        burst=1000,
        global_rate=g_rate,
        global_burst=g_burst,
        seconds=2.0,
    )
    ceiling = g_burst + g_rate * span
    assert calls > 4 * ceiling
    assert 0.9 * ceiling <= allowed <= ceiling + 1, (allowed, ceiling)
