"""Rate limits and daily quotas for the gateway: a token bucket per key, an optional global bucket shared
by every key, and a per-key quota of input rows per UTC day.

A bucket holds at most ``burst`` tokens and refills continuously at ``rate`` tokens per second; a request
takes one token from its key's bucket and one from the global bucket, and ``rows`` from the key's quota,
all or nothing: a refused request takes nothing from any of them. A token bucket has no windows, so there
is no edge to burst across: over any span of ``s`` seconds a key gets at most ``burst + rate * s``
requests.

``MemoryLimiter`` keeps the state in the process (one worker). ``RedisLimiter`` keeps it in Redis and
decides in one Lua script, atomically, with the Redis server's clock, so several workers and hosts share
one exact budget (no doubling per worker, no disagreement from skewed host clocks).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

from bastion.errors import GatewayError

__all__ = ["Decision", "Limiter", "MemoryLimiter", "RedisLimiter", "limiter_for"]

_DAY = 86_400.0


class Decision(NamedTuple):
    """The answer to one request: ``retry_after`` seconds until it would be allowed (0 when allowed);
    ``reason`` names the constraint that sets that wait: ``""``, ``"rate"``, ``"global"`` or ``"quota"``."""

    allowed: bool
    retry_after: float
    reason: str


class Limiter(Protocol):
    def check(self, key_id: str, rate: float, burst: int, daily_quota: int | None, rows: int = 1) -> Decision:
        """Charge one request of ``rows`` input rows to ``key_id``, or refuse it and charge nothing."""
        ...

    def close(self) -> None: ...


def _check_bucket(rate: float, burst: int, what: str) -> None:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise GatewayError(f"{what} rate must be a finite number of requests per second > 0, got {rate!r}")
    if not (isinstance(burst, int) and burst >= 1):
        raise GatewayError(f"{what} burst must be an integer >= 1, got {burst!r}")


def _check_request(rate: float, burst: int, daily_quota: int | None, rows: int) -> None:
    _check_bucket(rate, burst, "the key's")
    if daily_quota is not None and not (isinstance(daily_quota, int) and daily_quota >= 0):
        raise GatewayError(f"daily_quota must be an integer >= 0 or None (unlimited), got {daily_quota!r}")
    if not (isinstance(rows, int) and rows >= 0):
        raise GatewayError(f"rows must be an integer >= 0, got {rows!r}")


def _global_bucket(rate: float | None, burst: int | None) -> tuple[float, int] | None:
    """The global bucket, or None. A rate without a burst gets a burst of one second's worth."""
    if rate is None:
        if burst is not None:
            raise GatewayError("global_burst was given without global_rate; set global_rate too, or neither")
        return None
    if burst is None:
        burst = max(1, math.ceil(rate)) if isinstance(rate, int | float) and math.isfinite(rate) else 1
    _check_bucket(rate, burst, "the global")
    return float(rate), burst


def _verdict(waits: list[tuple[float, str]]) -> Decision:
    """Allowed when nothing must wait; otherwise the longest wait and the constraint that sets it."""
    if not waits:
        return Decision(True, 0.0, "")
    wait, reason = max(waits, key=lambda w: w[0])
    return Decision(False, wait, reason)


# ----------------------------------------------------------------------------------------------- memory


@dataclass
class _Bucket:
    tokens: float
    stamp: float  # when `tokens` was measured

    def level(self, now: float, rate: float, burst: int) -> tuple[float, float]:
        """Tokens at ``now`` and the time they refer to; a clock that steps back refills nothing."""
        stamp = max(self.stamp, now)
        return min(float(burst), self.tokens + (stamp - self.stamp) * rate), stamp


@dataclass
class _KeyState:
    bucket: _Bucket
    day: int = -1  # UTC day number (epoch days) that `used` counts
    used: int = 0


class MemoryLimiter:
    """Limits kept in this process; exact for one worker, thread-safe.

    At most ``max_keys`` keys are tracked: past that, the least recently seen key is forgotten. A key idle
    for ``burst / rate`` seconds has a full bucket, so forgetting it loses nothing but its quota count for
    the day; size ``max_keys`` above the number of keys active in a day to keep quotas exact.
    """

    def __init__(
        self,
        global_rate: float | None = None,
        global_burst: int | None = None,
        clock: Callable[[], float] = time.time,
        max_keys: int = 100_000,
    ) -> None:
        if not (isinstance(max_keys, int) and max_keys >= 1):
            raise GatewayError(f"max_keys must be an integer >= 1, got {max_keys!r}")
        self._global = _global_bucket(global_rate, global_burst)
        self._clock = clock
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()
        self._global_bucket = _Bucket(float(self._global[1]), -math.inf) if self._global else None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """The number of keys whose state is held (bounded by ``max_keys``)."""
        return len(self._keys)

    def check(self, key_id: str, rate: float, burst: int, daily_quota: int | None, rows: int = 1) -> Decision:
        _check_request(rate, burst, daily_quota, rows)
        with self._lock:
            now = float(self._clock())
            state = self._keys.get(key_id)
            if state is None:
                state = _KeyState(_Bucket(float(burst), now))
            waits: list[tuple[float, str]] = []

            day = math.floor(now / _DAY)
            used = state.used if state.day == day else 0
            if daily_quota is not None and used + rows > daily_quota:
                waits.append(((day + 1) * _DAY - now, "quota"))

            tokens, stamp = state.bucket.level(now, rate, burst)
            if tokens < 1.0:
                waits.append(((1.0 - tokens) / rate, "rate"))

            g_tokens = g_stamp = 0.0
            if self._global is not None and self._global_bucket is not None:
                g_rate, g_burst = self._global
                g_tokens, g_stamp = self._global_bucket.level(now, g_rate, g_burst)
                if g_tokens < 1.0:
                    waits.append(((1.0 - g_tokens) / g_rate, "global"))

            decision = _verdict(waits)
            if decision.allowed:
                state.bucket = _Bucket(tokens - 1.0, stamp)
                state.day, state.used = day, used + rows
                if self._global_bucket is not None:
                    self._global_bucket.tokens, self._global_bucket.stamp = g_tokens - 1.0, g_stamp
                self._remember(key_id, state)
            elif key_id in self._keys:
                self._keys.move_to_end(key_id)
            return decision

    def _remember(self, key_id: str, state: _KeyState) -> None:
        self._keys[key_id] = state
        self._keys.move_to_end(key_id)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            self._keys.clear()


# ------------------------------------------------------------------------------------------------ redis

# KEYS: the key's bucket, the global bucket, the key's quota (hashes). ARGV: rate, burst, global rate and
# burst ("" = no global bucket), daily quota ("" = unlimited), rows. Returns {allowed, retry_after, reason}
# (retry_after as a string: Redis turns Lua numbers into integers). Numbers are stored with %.17g and
# times with microseconds so that reading them back loses nothing that matters.
_SCRIPT = """
-- Redis < 5 replicates scripts verbatim and refuses writes after TIME unless told to replicate effects
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local function level(key, rate, burst)
  local s = redis.call('HMGET', key, 'tokens', 'stamp')
  local tokens, stamp = tonumber(s[1]), tonumber(s[2])
  if tokens == nil or stamp == nil then return burst, now end
  local at = math.max(stamp, now)
  return math.min(burst, tokens + (at - stamp) * rate), at
end

local function take(key, tokens, stamp, rate, burst)
  local left = tokens - 1
  redis.call('HSET', key, 'tokens', string.format('%.17g', left), 'stamp', string.format('%.6f', stamp))
  -- an absent bucket reads as full, so the key may go once it would have refilled
  redis.call('PEXPIRE', key, math.ceil((burst - left) / rate * 1000) + 1000)
end

local waits = {}
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local day = math.floor(now / 86400)
local rows = tonumber(ARGV[6])

local quota, used = tonumber(ARGV[5]), 0
if quota ~= nil then
  local q = redis.call('HMGET', KEYS[3], 'day', 'used')
  if tonumber(q[1]) == day then used = tonumber(q[2]) or 0 end
  if used + rows > quota then table.insert(waits, {(day + 1) * 86400 - now, 'quota'}) end
end

local tokens, stamp = level(KEYS[1], rate, burst)
if tokens < 1 then table.insert(waits, {(1 - tokens) / rate, 'rate'}) end

local g_rate, g_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local g_tokens, g_stamp
if g_rate ~= nil then
  g_tokens, g_stamp = level(KEYS[2], g_rate, g_burst)
  if g_tokens < 1 then table.insert(waits, {(1 - g_tokens) / g_rate, 'global'}) end
end

if #waits > 0 then
  local worst = waits[1]
  for i = 2, #waits do if waits[i][1] > worst[1] then worst = waits[i] end end
  return {0, string.format('%.6f', worst[1]), worst[2]}
end

take(KEYS[1], tokens, stamp, rate, burst)
if g_rate ~= nil then take(KEYS[2], g_tokens, g_stamp, g_rate, g_burst) end
if quota ~= nil then
  redis.call('HSET', KEYS[3], 'day', day, 'used', used + rows)
  redis.call('PEXPIRE', KEYS[3], math.ceil(((day + 1) * 86400 - now) * 1000) + 60000)
end
return {1, '0', ''}
"""


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisLimiter:
    """Limits kept in Redis, shared by every worker and host that uses the same ``url`` and ``prefix``.

    Each check is one Lua script run (EVALSHA, loaded again if the server lost it): the key's bucket, the
    global bucket and the key's quota are read, decided and written atomically with the server's ``TIME``.
    Every key it writes has a TTL, so idle keys leave Redis by themselves.
    """

    def __init__(
        self,
        url: str,
        global_rate: float | None = None,
        global_burst: int | None = None,
        prefix: str = "bastion:",
    ) -> None:
        import redis

        self._global = _global_bucket(global_rate, global_burst)
        self._url = _redacted(url)
        self._prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        try:
            self._client: Any = redis.Redis.from_url(
                url, socket_connect_timeout=2.0, socket_timeout=2.0, decode_responses=True
            )
            self._client.ping()
        except (redis.exceptions.RedisError, ValueError, OSError) as e:
            raise GatewayError(
                f"cannot use Redis at {self._url} for limits ({type(e).__name__}: {e}); start Redis there, "
                'fix the URL, or set limits = "memory" (exact for one worker only)'
            ) from None
        # register_script runs EVALSHA and falls back to loading the script when the server lacks it
        self._script = self._client.register_script(_SCRIPT)

    def check(self, key_id: str, rate: float, burst: int, daily_quota: int | None, rows: int = 1) -> Decision:
        _check_request(rate, burst, daily_quota, rows)
        p = self._prefix
        g_rate, g_burst = (repr(self._global[0]), str(self._global[1])) if self._global else ("", "")
        args = [
            repr(float(rate)),
            str(burst),
            g_rate,
            g_burst,
            "" if daily_quota is None else str(daily_quota),
        ]
        try:
            allowed, retry_after, reason = self._script(
                keys=[f"{p}bucket:{key_id}", f"{p}global", f"{p}quota:{key_id}"], args=[*args, str(rows)]
            )
        except self._errors as e:
            raise GatewayError(
                f"lost Redis at {self._url} while checking limits ({e}); restart Redis or check the network"
            ) from None
        return Decision(bool(allowed), float(retry_after), str(reason))

    def close(self) -> None:
        self._client.close()


def limiter_for(
    url: str | None, global_rate: float | None = None, global_burst: int | None = None
) -> Limiter:
    """The limiter a config names: None or ``"memory"`` (one worker) or ``redis://``/``rediss://``/
    ``unix://`` (shared by every worker using that Redis)."""
    if url is None or url == "memory":
        return MemoryLimiter(global_rate, global_burst)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiter(url, global_rate, global_burst)
    raise GatewayError(
        f"unknown limits backend {_redacted(url)!r}; use 'memory' (one worker) or a redis://HOST:PORT/DB URL"
    )
