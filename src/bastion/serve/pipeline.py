"""The steps of one model request, in order: authentication → (body, JSON: the routes) → model and scope
→ detection penalty → rate limit and quota → (validation: the routes) → in-line input detectors (on the
rows as sent; a ``reject`` key's flagged request stops here) → input transforms → model → output policy
(last) → detectors → audit record appended, durable → response. :class:`Gateway` holds what the steps
share."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from fastapi.responses import JSONResponse, Response

from bastion.errors import RemoteModelError
from bastion.serve.config import GatewayConfig
from bastion.serve.inline import InputFlag, inline_defenses
from bastion.serve.metrics import Metrics
from bastion.serve.served import Served, policy_for, serve_model
from bastion.serve.wire import Refusal, Trace

if TYPE_CHECKING:
    from bastion.model import Classifier
    from bastion.serve.alerts import Alerter
    from bastion.serve.audit_log import AuditLog
    from bastion.serve.detect import Flag, QueryDetector
    from bastion.serve.drift import DriftMonitor
    from bastion.serve.keys import ApiKey, KeyStore
    from bastion.serve.limits import Limiter

__all__ = ["THROTTLE_SECONDS", "Gateway"]

logger = logging.getLogger("bastion.serve.app")

THROTTLE_SECONDS = 60.0  # on_detection="throttle": a flagged key is refused (429) this long after each flag
ALERT_INTERVAL = 3600.0  # on_detection="alert": at most one alert per key and detector this often
MAX_ALERT_KEYS = 100_000  # (key, detector) pairs remembered for that


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        models: Mapping[str, Classifier],
        keys: KeyStore,
        limiter: Limiter,
        audit: AuditLog,
        detectors: Sequence[QueryDetector],
        metrics: Metrics | None = None,
    ) -> None:
        from bastion.serve.group_commit import GroupCommitter

        self.config, self.keys, self.limiter, self.audit = config, keys, limiter, audit
        # one writer thread per process commits the records of concurrent requests together: each
        # request still waits for its own record to be durable, but 50 clients no longer queue for 50
        # separate fsyncs (group commit, which the issue allows)
        self.committer = GroupCommitter(audit)
        self.detectors = list(detectors)
        self.metrics = metrics or Metrics()
        self.served = {
            name: serve_model(name, model, config.input_shapes, config.max_batch)
            for name, model in models.items()
        }
        # transforms checked and input detectors calibrated now, so a bad config fails at start-up
        self.inline = inline_defenses(config, self.served)
        self.drift: dict[str, DriftMonitor] = {}  # served name -> its monitor (create_app sets them)
        self.alerter: Alerter | None = None
        self._alerted: OrderedDict[tuple[str, str], float] = OrderedDict()  # (key, detector) -> last alert
        self._penalties: dict[str, float] = {}  # key id -> refused until (time.time()); inf = blocked
        self._lock = threading.Lock()

    def authenticate(self, token: str | None, trace: Trace) -> ApiKey:
        if not token:
            raise Refusal(
                401,
                "no API key; send 'Authorization: Bearer TOKEN' or 'X-API-Key: TOKEN' (bastion keys create)",
                {"WWW-Authenticate": "Bearer"},
            )
        key = self.keys.authenticate(token)
        if key is None:
            raise Refusal(
                401,
                "unknown or malformed API key; check the token or create one with bastion keys create",
                {"WWW-Authenticate": "Bearer"},
            )
        trace.key_id = key.key_id
        if not key.active:
            raise Refusal(403, f"API key {key.key_id} is revoked; ask the operator for a new key")
        return key

    def model_for(self, key: ApiKey, name: Any, trace: Trace) -> Served:
        if not isinstance(name, str) or not name:
            raise Refusal(
                400, "model: missing; name the model to query (GET /v2/models/NAME tells its inputs)"
            )
        served = self.served.get(name)
        if served is None:
            visible = [n for n in self.served if key.scope.allows(n)]
            raise Refusal(
                404,
                f"model {name[:60]!r} not found; models this key may query: {', '.join(visible) or 'none'}",
            )
        trace.model = name
        if not key.scope.allows(name):
            raise Refusal(
                403, f"API key {key.key_id} may not query model {name!r}; ask for a key scoped to it"
            )
        return served

    def check_penalty(self, key: ApiKey) -> None:
        with self._lock:
            until = self._penalties.get(key.key_id)
        if until is None:
            return
        if math.isinf(until):
            raise Refusal(403, f"API key {key.key_id} is blocked after a detector flagged its queries")
        wait = until - time.time()
        if wait > 0:
            self.metrics.rate_limited.labels("detection").inc()
            raise Refusal(
                429,
                f"API key {key.key_id} is throttled after a detector flagged its queries; retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def check_limits(self, key: ApiKey, rows: int) -> None:
        scope = key.scope
        decision = self.limiter.check(key.key_id, scope.rate, scope.burst, scope.daily_quota, rows=rows)
        if decision.allowed:
            return
        self.metrics.rate_limited.labels(decision.reason or "rate").inc()
        what = {
            "quota": "daily quota of input rows used up",
            "global": "the gateway is at its global request rate",
        }.get(decision.reason, f"rate limit of {scope.rate:g} requests/s (burst {scope.burst}) reached")
        wait = max(1, math.ceil(decision.retry_after))
        raise Refusal(429, f"{what}; retry after {wait} s", {"Retry-After": str(wait)})

    def answer(self, served: Served, key: ApiKey, x: torch.Tensor, trace: Trace) -> torch.Tensor:
        """The released matrix (N, K) for validated inputs ``x``: the model, then the key's output policy."""
        trace.rows = int(x.shape[0])
        trace.digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()
        try:
            policy = policy_for(key.scope.output)
        except ValueError:
            raise Refusal(
                500, f"API key {key.key_id} has an invalid output policy; recreate the key"
            ) from None
        trace.policy = str(policy)
        if flagged := self.inline.check(served, x):
            self.input_flagged(key, flagged, trace)
        seen = self.inline.transform(served, x)  # the digest above stays that of the rows as sent
        try:
            with torch.no_grad():
                logits = served.model(seen)
        except RemoteModelError as exc:
            logger.warning("upstream model %s failed: %s", served.name, exc)
            raise Refusal(502, f"the upstream model {served.name!r} failed; retry later") from None
        if not isinstance(logits, torch.Tensor) or logits.shape != (x.shape[0], served.num_classes):
            logger.error(
                "model %s answered %s for %d rows", served.name, getattr(logits, "shape", None), len(x)
            )
            raise Refusal(500, f"model {served.name!r} answered malformed outputs; the operator must fix it")
        self.monitor(served.name, x, logits.float())
        released = policy.apply(logits.float())
        labels = released.argmax(1)
        trace.output = (
            {"labels": labels.tolist()} if policy.kind == "labels" else {"scores": released.tolist()}
        )
        self.metrics.rows.labels(served.name).inc(trace.rows)
        for label, count in zip(*torch.unique(labels, return_counts=True), strict=True):
            self.metrics.classes.labels(served.name, str(int(label))).inc(int(count))
        return released

    def input_flagged(self, key: ApiKey, flagged: list[InputFlag], trace: Trace) -> None:
        """Record the in-line detectors' flags; refuse the request (422) when the key rejects flagged
        inputs, before the model sees them."""
        trace.flags = trace.flags + tuple(f.message() for f in flagged)
        for f in flagged:
            self.metrics.flags.labels(f.name).inc()
        policy = key.scope.on_input_flag
        logger.info("key %s input flagged (%s): %s", key.key_id, policy, "; ".join(trace.flags))
        if policy == "reject":
            names = ", ".join(f.detector for f in flagged)
            rows = sorted({r for f in flagged for r in f.rows})
            raise Refusal(
                422,
                f"inputs: {len(rows)} of {trace.rows} rows flagged as adversarial by {names} "
                f"(rows {', '.join(map(str, rows[:10]))}{', ...' if len(rows) > 10 else ''}); "
                f"API key {key.key_id}'s policy rejects flagged inputs: send clean inputs or ask for "
                "a key with on_input_flag 'flag'",
            )

    def monitor(self, name: str, x: torch.Tensor, logits: torch.Tensor) -> None:
        """Confidence metrics and the drift window see the model's own top-class probability: the same
        for every key whatever its output policy releases."""
        confidence = logits.softmax(1).amax(1)
        histogram = self.metrics.confidence.labels(name)
        for value in confidence.tolist():
            histogram.observe(value)
        if (drift := self.drift.get(name)) is not None:
            drift.observe(x, confidence)

    def detect(self, key: ApiKey, x: torch.Tensor, released: torch.Tensor, trace: Trace) -> None:
        flags = []
        for detector in self.detectors:
            try:
                flags.extend(detector.observe(key.key_id, x, released))
            except Exception:  # a broken detector must not take the model down with it
                name = getattr(detector, "name", "?")
                logger.exception("detector %s failed on request %s", name, trace.request_id)
        if not flags:
            return
        trace.flags = trace.flags + tuple(f"{f.detector}: {f.message}" for f in flags)
        for f in flags:
            self.metrics.flags.labels(f.detector).inc()
        policy = self.config.on_detection
        # a flagged key is a security event under every policy: the first flag of a (key, detector) pair
        # in the hour is a warning (visible at uvicorn's default level), the rest of the stream debug
        fresh = self._first_alert(key.key_id, flags)
        logger.log(
            logging.WARNING if fresh else logging.DEBUG,
            "key %s flagged (%s): %s",
            key.key_id,
            policy,
            "; ".join(trace.flags),
        )
        if policy == "alert" and self.alerter is not None and fresh:
            self.alerter.alert(
                "detection",
                f"key {key.key_id} flagged: {'; '.join(trace.flags)}",
                key_id=key.key_id,
                detectors=sorted({f.detector for f in flags}),
                request_id=trace.request_id,
            )
        if policy in ("throttle", "block"):
            with self._lock:
                self._penalties[key.key_id] = (
                    math.inf if policy == "block" else time.time() + THROTTLE_SECONDS
                )
        if policy == "block":
            trace.output = None
            raise Refusal(403, f"API key {key.key_id} is blocked after a detector flagged its queries")

    def _first_alert(self, key_id: str, flags: Sequence[Flag]) -> bool:
        """Whether this (key, detector) pair has not alerted within ALERT_INTERVAL: once a detector trips
        it stays tripped for the key's following requests, and one alert per hour says it all (every
        request's flags are still in the audit log and the metrics)."""
        now = time.time()
        with self._lock:
            fresh = [
                f.detector
                for f in flags
                if now - self._alerted.get((key_id, f.detector), -math.inf) >= ALERT_INTERVAL
            ]
            for name in fresh:
                self._alerted[(key_id, name)] = now
                self._alerted.move_to_end((key_id, name))
            while len(self._alerted) > MAX_ALERT_KEYS:  # bounded: forget the oldest
                self._alerted.popitem(last=False)
        return bool(fresh)

    def record(self, trace: Trace, status: int) -> None:
        """Append the request's audit record (durable when this returns)."""
        from bastion.serve.audit_log import AuditRecord

        self.committer.append(  # no timeout: a record written after a 503 would claim a 200
            AuditRecord(
                request_id=trace.request_id,
                key_id=trace.key_id,
                time=time.time(),
                endpoint=trace.endpoint,
                model=trace.model,
                status=status,
                rows=trace.rows,
                input_digest=trace.digest,
                output=trace.output if status == 200 else None,
                policy=trace.policy,
                latency_ms=(time.perf_counter() - trace.start) * 1000.0,
                flags=trace.flags,
            )
        )

    def finish(
        self, trace: Trace, status: int, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> Response:
        """Record, count and build the response; a record that cannot be written withholds the answer."""
        try:
            self.record(trace, status)
        except Exception:
            logger.exception("audit record of request %s could not be written", trace.request_id)
            status, payload, headers = 503, {"error": "the audit log is unavailable; retry later"}, {}
        model = trace.model if trace.model in self.served else "-"
        endpoint = trace.endpoint.split(" ")[0]
        self.metrics.requests.labels(endpoint, model, str(status)).inc()
        if trace.key_id is not None:
            self.metrics.key_requests.labels(trace.key_id).inc()
            if 400 <= status < 500:
                self.metrics.refusals.labels(trace.key_id, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - trace.start)
        return JSONResponse(payload, status_code=status, headers=dict(headers))

    def close(self) -> None:
        """Stop the background threads (audit writer, drift tests, alert delivery) after delivering what
        is queued; the audit records first, so a slow webhook cannot hold them back."""
        self.committer.close()
        for monitor in self.drift.values():
            monitor.close()
        if self.alerter is not None:
            self.alerter.close()
