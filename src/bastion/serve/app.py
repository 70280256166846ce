"""The gateway's FastAPI application: :func:`create_app`.

Endpoints (every answer is JSON; every error is ``{"error": "one line naming the field and the fix"}``;
every response carries ``X-Request-ID``, the id of its audit record):

- ``POST /v2/models/{name}/infer`` — Open Inference Protocol (KServe v2 REST), the wire format of
  :mod:`bastion.remote`: ``{"inputs": [{"name": "input-0", "shape": [N, *row], "datatype": "FP32",
  "data": [...]}]}`` → ``{"model_name", "id", "parameters": {"output_policy"}, "outputs": [{"name":
  "output-0", "shape": [N, K], "datatype": "FP32", "data": [released matrix, row-major]}]}``. The released
  matrix is what the key's output policy releases (:mod:`bastion.defenses.output_policy`): probabilities
  (``probs``), the top k probabilities with zeros elsewhere (``topK``), rounded probabilities (``roundD``),
  the one-hot vector of the predicted class (``labels``). A :class:`~bastion.remote.RemoteClassifier`
  reads it back with ``outputs="probabilities"`` (``oip:...?outputs=probabilities``).
- ``GET /v2/models/{name}`` — metadata: ``inputs``/``outputs`` (``-1`` marks the batch), plus
  ``parameters``: the input bounds, ``max_batch`` and the caller's output policy.
- ``POST /v1/predict`` — ``{"model": NAME, "inputs": [row, ...]}`` → ``{"model", "request_id", "policy",
  "labels": [class index per row], "scores": [[released row], ...]}``; ``scores`` is absent under the
  ``labels`` policy (the labels are everything that key is given).
- ``GET /healthz``, ``/readyz``, ``/v2/health/live``, ``/v2/health/ready`` (no key needed), ``GET
  /metrics`` (Prometheus text; no key: expose it to the scraper only), ``/openapi.json``, ``/docs``.

Keys: ``Authorization: Bearer TOKEN`` or ``X-API-Key: TOKEN``. Per request, in order: authentication
(401 missing/unknown, 403 revoked) → body size (413, before parsing) → JSON (400) → model and scope (404
unknown, 403 out of scope) → detection policy (a blocked key 403, a throttled one 429) → rate limit and
quota (429 + ``Retry-After``) → validation (4xx naming the field) → model → output policy (last) →
detectors → audit record appended, durable (if that fails: 503, nothing released) → response. Every
request to the model endpoints gets one audit record, refused ones included (health and metrics do not).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.errors import GatewayError, RemoteModelError
from bastion.serve.config import GatewayConfig
from bastion.serve.validation import (
    InputSpec,
    InvalidInput,
    claimed_rows,
    oip_tensor,
    parse_json,
    predict_tensor,
)

if TYPE_CHECKING:
    from bastion.defenses.output_policy import OutputPolicy
    from bastion.model import Classifier
    from bastion.serve.audit_log import AuditLog
    from bastion.serve.detect import QueryDetector
    from bastion.serve.keys import ApiKey, KeyStore
    from bastion.serve.limits import Limiter

__all__ = ["REQUEST_ID_HEADER", "create_app", "input_shape_of"]

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
OUTPUT_NAME = "output-0"
INPUT_NAME = "input-0"
THROTTLE_SECONDS = 60.0  # on_detection="throttle": a flagged key is refused (429) this long after each flag
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


def input_shape_of(
    name: str, model: Classifier, configured: Mapping[str, tuple[int, ...]]
) -> tuple[int, ...]:
    """The per-row input shape of a served model: from the config, the model (``input_shape``), an
    ``oip:`` model's metadata, or the zoo card; :class:`GatewayError` when none tells it."""
    if name in configured:
        return tuple(configured[name])
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple | list) and shape:
        return tuple(int(d) for d in shape)
    metadata = getattr(model, "metadata", None)  # a RemoteClassifier that read its upstream's metadata
    if isinstance(metadata, dict):
        for tensor in metadata.get("inputs") or []:
            dims = tensor.get("shape") or []
            if len(dims) > 1 and all(isinstance(d, int) and d > 0 for d in dims[1:]):
                return tuple(dims[1:])
    model_name = str(getattr(model, "name", ""))
    if model_name.startswith("zoo:"):
        from bastion.zoo.architectures import spec

        return tuple(spec(model_name[4:]).input_shape)
    raise GatewayError(
        f"model {name!r}: its input shape is unknown; set it in the config "
        f"([input_shapes] {name} = [C, H, W]) or with --input-shape"
    )


@lru_cache(maxsize=256)
def _policy(spec: str) -> OutputPolicy:
    from bastion.defenses.output_policy import OutputPolicy

    return OutputPolicy.parse(spec)


@dataclass(frozen=True)
class _Served:
    name: str
    model: Classifier
    spec: InputSpec
    num_classes: int


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


@dataclass
class _Trace:
    """What the audit record of one request will hold, filled in as the request goes."""

    request_id: str
    endpoint: str
    start: float
    key_id: str | None = None
    model: str | None = None
    rows: int = 0
    digest: str | None = None
    output: Any = None
    policy: str | None = None
    flags: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)


class _Metrics:
    """Prometheus metrics in a registry of this app's own (several apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bastion_gateway_requests",
            "Requests by endpoint, model and status",
            ["endpoint", "model", "status"],
            registry=r,
        )
        self.refusals = Counter(
            "bastion_gateway_key_refusals",
            "4xx answers by key id and status",
            ["key_id", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "bastion_gateway_request_seconds",
            "Time to answer a model request",
            ["endpoint"],
            registry=r,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
        )
        self.rate_limited = Counter(
            "bastion_gateway_rate_limited",
            "Requests refused by the limiter, by reason",
            ["reason"],
            registry=r,
        )
        self.flags = Counter("bastion_gateway_detector_flags", "Detector flags", ["detector"], registry=r)
        self.rows = Counter("bastion_gateway_rows", "Input rows answered", ["model"], registry=r)
        self.classes = Counter(
            "bastion_gateway_predicted_class", "Predicted classes answered", ["model", "label"], registry=r
        )


class _RequestIdMiddleware:
    """Gives every request an id (``scope['state']['request_id']``) and echoes it in ``X-Request-ID``.
    The id is always the gateway's own: a client-chosen id could collide with another record's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        match = _BEARER.match(auth)
        return match[1] if match else ""
    return request.headers.get("x-api-key")


class _Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        models: Mapping[str, Classifier],
        keys: KeyStore,
        limiter: Limiter,
        audit: AuditLog,
        detectors: Sequence[QueryDetector],
    ) -> None:
        self.config, self.keys, self.limiter, self.audit = config, keys, limiter, audit
        self.detectors = list(detectors)
        self.metrics = _Metrics()
        self.served = {name: self._serve(name, model) for name, model in models.items()}
        self._penalties: dict[str, float] = {}  # key id -> refused until (time.time()); inf = blocked
        self._lock = threading.Lock()

    def _serve(self, name: str, model: Classifier) -> _Served:
        row_shape = input_shape_of(name, model, self.config.input_shapes)
        low, high = (float(b) for b in model.bounds)
        spec = InputSpec(row_shape, (low, high), self.config.max_batch, INPUT_NAME)
        k = model.num_classes
        if k is None:  # one forward pass at start-up tells it (and fails early on a broken model)
            with torch.no_grad():
                k = int(model(torch.full((1, *row_shape), low, dtype=torch.float32)).shape[1])
        return _Served(name, model, spec, int(k))

    # -- the steps of a request -----------------------------------------------------------------------
    def authenticate(self, token: str | None, trace: _Trace) -> ApiKey:
        if not token:
            raise _Refusal(
                401,
                "no API key; send 'Authorization: Bearer TOKEN' or 'X-API-Key: TOKEN' (bastion keys create)",
                {"WWW-Authenticate": "Bearer"},
            )
        key = self.keys.authenticate(token)
        if key is None:
            raise _Refusal(
                401,
                "unknown or malformed API key; check the token or create one with bastion keys create",
                {"WWW-Authenticate": "Bearer"},
            )
        trace.key_id = key.key_id
        if not key.active:
            raise _Refusal(403, f"API key {key.key_id} is revoked; ask the operator for a new key")
        return key

    def model_for(self, key: ApiKey, name: Any, trace: _Trace) -> _Served:
        if not isinstance(name, str) or not name:
            raise _Refusal(
                400, "model: missing; name the model to query (GET /v2/models/NAME tells its inputs)"
            )
        served = self.served.get(name)
        if served is None:
            visible = [n for n in self.served if key.scope.allows(n)]
            raise _Refusal(
                404,
                f"model {name[:60]!r} not found; models this key may query: {', '.join(visible) or 'none'}",
            )
        trace.model = name
        if not key.scope.allows(name):
            raise _Refusal(
                403, f"API key {key.key_id} may not query model {name!r}; ask for a key scoped to it"
            )
        return served

    def check_penalty(self, key: ApiKey) -> None:
        with self._lock:
            until = self._penalties.get(key.key_id)
        if until is None:
            return
        if math.isinf(until):
            raise _Refusal(403, f"API key {key.key_id} is blocked after a detector flagged its queries")
        wait = until - time.time()
        if wait > 0:
            self.metrics.rate_limited.labels("detection").inc()
            raise _Refusal(
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
        raise _Refusal(429, f"{what}; retry after {wait} s", {"Retry-After": str(wait)})

    def answer(self, served: _Served, key: ApiKey, x: torch.Tensor, trace: _Trace) -> torch.Tensor:
        """The released matrix (N, K) for validated inputs ``x``: the model, then the key's output policy."""
        trace.rows = int(x.shape[0])
        trace.digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()
        try:
            policy = _policy(key.scope.output)
        except ValueError:
            raise _Refusal(
                500, f"API key {key.key_id} has an invalid output policy; recreate the key"
            ) from None
        trace.policy = str(policy)
        try:
            with torch.no_grad():
                logits = served.model(x)
        except RemoteModelError as exc:
            logger.warning("upstream model %s failed: %s", served.name, exc)
            raise _Refusal(502, f"the upstream model {served.name!r} failed; retry later") from None
        if not isinstance(logits, torch.Tensor) or logits.shape != (x.shape[0], served.num_classes):
            logger.error(
                "model %s answered %s for %d rows", served.name, getattr(logits, "shape", None), len(x)
            )
            raise _Refusal(500, f"model {served.name!r} answered malformed outputs; the operator must fix it")
        released = policy.apply(logits.float())
        labels = released.argmax(1)
        trace.output = (
            {"labels": labels.tolist()} if policy.kind == "labels" else {"scores": released.tolist()}
        )
        self.metrics.rows.labels(served.name).inc(trace.rows)
        for label, count in zip(*torch.unique(labels, return_counts=True), strict=True):
            self.metrics.classes.labels(served.name, str(int(label))).inc(int(count))
        return released

    def detect(self, key: ApiKey, x: torch.Tensor, released: torch.Tensor, trace: _Trace) -> None:
        flags = []
        for detector in self.detectors:
            try:
                flags.extend(detector.observe(key.key_id, x, released))
            except Exception:  # a broken detector must not take the model down with it
                logger.exception(
                    "detector %s failed on request %s", getattr(detector, "name", "?"), trace.request_id
                )
        if not flags:
            return
        trace.flags = tuple(f"{f.detector}: {f.message}" for f in flags)
        for f in flags:
            self.metrics.flags.labels(f.detector).inc()
        policy = self.config.on_detection
        level = logging.INFO if policy == "log" else logging.WARNING
        logger.log(level, "key %s flagged (%s): %s", key.key_id, policy, "; ".join(trace.flags))
        if policy in ("throttle", "block"):
            with self._lock:
                self._penalties[key.key_id] = (
                    math.inf if policy == "block" else time.time() + THROTTLE_SECONDS
                )
        if policy == "block":
            trace.output = None
            raise _Refusal(403, f"API key {key.key_id} is blocked after a detector flagged its queries")

    def record(self, trace: _Trace, status: int) -> None:
        """Append the request's audit record (durable when this returns)."""
        from bastion.serve.audit_log import AuditRecord

        self.audit.append(
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
        self, trace: _Trace, status: int, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> Response:
        """Record, count and build the response; a record that cannot be written withholds the answer."""
        try:
            self.record(trace, status)
        except Exception:
            logger.exception("audit record of request %s could not be written", trace.request_id)
            status, payload, headers = 503, {"error": "the audit log is unavailable; retry later"}, {}
        model = trace.model if trace.model in self.served else "-"
        self.metrics.requests.labels(trace.endpoint.split(" ")[0], model, str(status)).inc()
        if 400 <= status < 500 and trace.key_id is not None:
            self.metrics.refusals.labels(trace.key_id, str(status)).inc()
        self.metrics.latency.labels(trace.endpoint.split(" ")[0]).observe(time.perf_counter() - trace.start)
        return JSONResponse(payload, status_code=status, headers=dict(headers))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) past ``limit`` bytes: by Content-Length first, then while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refusal(
            413, f"body: {declared} bytes exceed max_body_bytes {limit}; send fewer rows per request"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, f"body: more than max_body_bytes {limit} bytes; send fewer rows per request")
        chunks.append(chunk)
    return b"".join(chunks)


_OIP_BODY = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string", "example": INPUT_NAME},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string", "example": "FP32"},
                    "data": {"type": "array", "items": {}},
                },
            },
        }
    },
}
_PREDICT_BODY = {
    "type": "object",
    "required": ["model", "inputs"],
    "properties": {"model": {"type": "string"}, "inputs": {"type": "array", "items": {}}},
}
_ERRORS = {
    str(code): {"description": what, "content": {"application/json": {"schema": {"type": "object"}}}}
    for code, what in (
        (400, "malformed input (the message names the field)"),
        (401, "missing or unknown API key"),
        (403, "revoked key, model out of scope, or key blocked"),
        (404, "unknown model"),
        (413, "body or batch too large"),
        (429, "rate limit, quota or throttle (see Retry-After)"),
        (502, "upstream model failed"),
        (503, "audit log unavailable"),
    )
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": _ERRORS,
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def create_app(
    config: GatewayConfig,
    *,
    models: Mapping[str, Classifier],
    keys: KeyStore,
    limiter: Limiter,
    log: AuditLog,
    detectors: Sequence[QueryDetector] = (),
) -> FastAPI:
    """The gateway in front of ``models`` (served name -> classifier), with its key store, limiter, audit
    log and detectors. See the module docstring for the endpoints and the order of the checks."""
    gw = _Gateway(config, models, keys, limiter, log, detectors)
    app = FastAPI(
        title="bastion gateway",
        description="Open Inference Protocol (KServe v2) and /v1/predict behind API keys, limits, "
        "validation, output policies and a hash-chained audit log.",
        version="1",
    )
    app.state.gateway = gw
    app.state.registry = gw.metrics.registry
    app.add_middleware(_RequestIdMiddleware)

    async def model_request(request: Request, endpoint: str, name: str | None, oip: bool) -> Response:
        trace = _Trace(request.state.request_id, endpoint, time.perf_counter())
        token = _token(request)
        try:
            if not token:  # refused before reading the body
                gw.authenticate(token, trace)
            raw = await _read_body(request, config.max_body_bytes)
        except _Refusal as r:
            return await run_in_threadpool(gw.finish, trace, r.status, {"error": r.message}, r.headers)
        return await run_in_threadpool(serve_sync, trace, token, raw, name, oip)

    def serve_sync(trace: _Trace, token: str | None, raw: bytes, name: str | None, oip: bool) -> Response:
        try:
            key = gw.authenticate(token, trace)
            body = parse_json(raw)
            if not oip:
                name = body.get("model") if isinstance(body, dict) else None
            served = gw.model_for(key, name, trace)
            gw.check_penalty(key)
            gw.check_limits(key, claimed_rows(body))
            x = (oip_tensor if oip else predict_tensor)(body, served.spec)
            released = gw.answer(served, key, x, trace)
            gw.detect(key, x, released, trace)
        except _Refusal as r:
            return gw.finish(trace, r.status, {"error": r.message}, r.headers)
        except InvalidInput as exc:
            return gw.finish(trace, exc.status, {"error": str(exc)}, {})
        except Exception:  # recorded and answered like any other request; the details go to the log
            logger.exception("request %s failed", trace.request_id)
            return gw.finish(trace, 500, {"error": f"internal error (request {trace.request_id})"}, {})
        policy = str(trace.policy)
        if oip:
            payload: dict[str, Any] = {
                "model_name": served.name,
                "id": trace.request_id,
                "parameters": {"output_policy": policy},
                "outputs": [
                    {
                        "name": OUTPUT_NAME,
                        "shape": list(released.shape),
                        "datatype": "FP32",
                        "data": released.flatten().tolist(),
                    }
                ],
            }
        else:
            payload = {"model": served.name, "request_id": trace.request_id, "policy": policy}
            payload["labels"] = released.argmax(1).tolist()
            if _policy(policy).kind != "labels":
                payload["scores"] = released.tolist()
        return gw.finish(trace, 200, payload, {})

    def metadata_sync(trace: _Trace, token: str | None, name: str) -> Response:
        try:
            key = gw.authenticate(token, trace)
            served = gw.model_for(key, name, trace)
            gw.check_penalty(key)
            gw.check_limits(key, 0)
        except _Refusal as r:
            return gw.finish(trace, r.status, {"error": r.message}, r.headers)
        trace.policy = str(_policy(key.scope.output))
        spec = served.spec
        payload = {
            "name": served.name,
            "versions": ["1"],
            "platform": "bastion-gateway",
            "inputs": [{"name": spec.input_name, "datatype": "FP32", "shape": [-1, *spec.row_shape]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, served.num_classes]}],
            "parameters": {
                "bounds": list(spec.bounds),
                "max_batch": spec.max_batch,
                "output_policy": trace.policy,
            },
        }
        return gw.finish(trace, 200, payload, {})

    @app.post("/v2/models/{name}/infer", openapi_extra=_body_doc(_OIP_BODY), tags=["inference"])
    async def infer(name: str, request: Request) -> Response:
        """Open Inference Protocol inference; the outputs are what the key's output policy releases."""
        return await model_request(request, f"infer {request.url.path}", name, oip=True)

    @app.post("/v1/predict", openapi_extra=_body_doc(_PREDICT_BODY), tags=["inference"])
    async def predict(request: Request) -> Response:
        """Predict classes (and scores, where the key's policy releases them) for a list of rows."""
        return await model_request(request, "predict /v1/predict", None, oip=False)

    @app.get(
        "/v2/models/{name}",
        openapi_extra={"responses": _ERRORS, "security": [{"bearer": []}, {"apiKey": []}]},
        tags=["inference"],
    )
    async def model_metadata(name: str, request: Request) -> Response:
        """Open Inference Protocol model metadata (inputs, outputs) plus bounds and the key's policy."""
        trace = _Trace(request.state.request_id, f"metadata {request.url.path}", time.perf_counter())
        return await run_in_threadpool(metadata_sync, trace, _token(request), name)

    @app.get("/healthz", tags=["health"])
    @app.get("/v2/health/live", tags=["health"])
    async def live() -> dict[str, bool]:
        """The process answers."""
        return {"live": True}

    @app.get("/readyz", tags=["health"])
    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> dict[str, Any]:
        """The models are loaded and the gateway takes requests."""
        return {"ready": True, "models": sorted(gw.served)}

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        """Prometheus metrics of this gateway."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        fix = {404: "; see /docs for the endpoints", 405: "; see /docs for the methods"}.get(
            exc.status_code, ""
        )
        return _error(exc.status_code, f"{exc.detail}{fix}", getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return _error(400, f"{where}: {first.get('msg', 'invalid')}; see /docs for the request format")

    _document_security(app)
    return app


def _document_security(app: FastAPI) -> None:
    """Add the two ways of sending a key to the OpenAPI document's security schemes."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
