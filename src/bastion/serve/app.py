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
  reads it back as probabilities (it learns that, and ``max_batch``, from the metadata).
- ``GET /v2/models/{name}`` — metadata: ``inputs``/``outputs`` (``-1`` marks the batch), plus
  ``parameters``: the input bounds, ``max_batch`` and the caller's output policy.
- ``POST /v1/predict`` — ``{"model": NAME, "inputs": [row, ...]}`` → ``{"model", "request_id", "policy",
  "labels": [class index per row], "scores": [[released row], ...]}``; ``scores`` is absent under the
  ``labels`` policy (the labels are everything that key is given).
- ``GET /healthz``, ``/readyz``, ``/v2/health/live``, ``/v2/health/ready`` (no key needed), ``GET
  /metrics`` (Prometheus text; no key: expose it to the scraper only), ``/openapi.json``, ``/docs``.
- ``GET /dashboard``: a status page (:mod:`bastion.serve.dashboard`; who may see it: ``dashboard`` in the
  config).

Keys: ``Authorization: Bearer TOKEN`` or ``X-API-Key: TOKEN``. Per request, in order: authentication
(401 missing/unknown, 403 revoked) → body size (413, before parsing) → JSON (400) → model and scope (404
unknown, 403 out of scope) → detection policy (a blocked key 403, a throttled one 429) → rate limit and
quota (429 + ``Retry-After``) → validation (4xx naming the field) → in-line input detectors on the rows
as sent (:mod:`bastion.serve.inline`; a ``reject`` key's flagged request 422) → input transforms →
model → output policy (last) → attack detectors → audit record appended, durable (group commit; if that
fails: 503, nothing released) → response. Every
request to the model endpoints gets one audit record, refused ones included (health and metrics do not).

The pieces: :mod:`~bastion.serve.wire` (request id, key token, body, refusals), :mod:`~bastion.serve.pipeline`
(the steps), :mod:`~bastion.serve.served` (the served models), :mod:`~bastion.serve.metrics`,
:mod:`~bastion.serve.monitoring` (drift monitors and alerts from the config), :mod:`~bastion.serve.openapi`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.serve.config import GatewayConfig
from bastion.serve.openapi import ERRORS, OIP_BODY, PREDICT_BODY, SECURITY, body_doc, document_security
from bastion.serve.pipeline import THROTTLE_SECONDS, Gateway
from bastion.serve.served import Served, input_shape_of, policy_for
from bastion.serve.validation import InvalidInput, claimed_rows, oip_tensor, parse_json, predict_tensor
from bastion.serve.wire import REQUEST_ID_HEADER, Refusal, RequestIdMiddleware, Trace, error, read_body, token

if TYPE_CHECKING:
    from bastion.model import Classifier
    from bastion.serve.alerts import Alerter
    from bastion.serve.audit_log import AuditLog
    from bastion.serve.detect import QueryDetector
    from bastion.serve.drift import DriftMonitor
    from bastion.serve.keys import KeyStore
    from bastion.serve.limits import Limiter

__all__ = ["REQUEST_ID_HEADER", "THROTTLE_SECONDS", "create_app", "input_shape_of"]

logger = logging.getLogger(__name__)

OUTPUT_NAME = "output-0"


def create_app(
    config: GatewayConfig,
    *,
    models: Mapping[str, Classifier],
    keys: KeyStore,
    limiter: Limiter,
    log: AuditLog,
    detectors: Sequence[QueryDetector] = (),
    drift: Mapping[str, DriftMonitor] | None = None,
    alerter: Alerter | None = None,
) -> FastAPI:
    """The gateway in front of ``models`` (served name -> classifier), with its key store, limiter, audit
    log and detectors. See the module docstring for the endpoints and the order of the checks.

    ``alerter`` and ``drift`` (served name -> monitor) default to what the config names
    (``alert_webhook``; ``reference``: every served model whose rows have the reference's shape)."""
    from bastion.serve.monitoring import attach_monitoring

    gw = Gateway(config, models, keys, limiter, log, detectors)
    attach_monitoring(gw, drift, alerter)
    app = FastAPI(
        title="bastion gateway",
        description="Open Inference Protocol (KServe v2) and /v1/predict behind API keys, limits, "
        "validation, output policies and a hash-chained audit log.",
        version="1",
    )
    app.state.gateway = gw
    app.state.registry = gw.metrics.registry
    app.add_middleware(RequestIdMiddleware)
    app.router.add_event_handler("shutdown", gw.close)
    _model_routes(app, gw)
    _service_routes(app, gw)
    document_security(app)
    return app


def _released_payload(served: Served, trace: Trace, released: torch.Tensor, oip: bool) -> dict[str, Any]:
    policy = str(trace.policy)
    if oip:
        return {
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
    payload: dict[str, Any] = {"model": served.name, "request_id": trace.request_id, "policy": policy}
    payload["labels"] = released.argmax(1).tolist()
    if policy_for(policy).kind != "labels":
        payload["scores"] = released.tolist()
    return payload


def _serve_sync(
    gw: Gateway, trace: Trace, key_token: str | None, raw: bytes, name: str | None, oip: bool
) -> Response:
    try:
        key = gw.authenticate(key_token, trace)
        body = parse_json(raw)
        if not oip:
            name = body.get("model") if isinstance(body, dict) else None
        served = gw.model_for(key, name, trace)
        gw.check_penalty(key)
        gw.check_limits(key, claimed_rows(body))
        x = (oip_tensor if oip else predict_tensor)(body, served.spec)
        released = gw.answer(served, key, x, trace)
        gw.detect(key, x, released, trace)
    except Refusal as r:
        return gw.finish(trace, r.status, {"error": r.message}, r.headers)
    except InvalidInput as exc:
        return gw.finish(trace, exc.status, {"error": str(exc)}, {})
    except Exception:  # recorded and answered like any other request; the details go to the log
        logger.exception("request %s failed", trace.request_id)
        return gw.finish(trace, 500, {"error": f"internal error (request {trace.request_id})"}, {})
    return gw.finish(trace, 200, _released_payload(served, trace, released, oip), {})


def _metadata_sync(gw: Gateway, trace: Trace, key_token: str | None, name: str) -> Response:
    try:
        key = gw.authenticate(key_token, trace)
        served = gw.model_for(key, name, trace)
        gw.check_penalty(key)
        gw.check_limits(key, 0)
    except Refusal as r:
        return gw.finish(trace, r.status, {"error": r.message}, r.headers)
    trace.policy = str(policy_for(key.scope.output))
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


def _model_routes(app: FastAPI, gw: Gateway) -> None:
    async def model_request(request: Request, endpoint: str, name: str | None, oip: bool) -> Response:
        trace = Trace(request.state.request_id, endpoint, time.perf_counter())
        key_token = token(request)
        try:
            if not key_token:  # refused before reading the body
                gw.authenticate(key_token, trace)
            raw = await read_body(request, gw.config.max_body_bytes)
        except Refusal as r:
            return await run_in_threadpool(gw.finish, trace, r.status, {"error": r.message}, r.headers)
        return await run_in_threadpool(_serve_sync, gw, trace, key_token, raw, name, oip)

    @app.post("/v2/models/{name}/infer", openapi_extra=body_doc(OIP_BODY), tags=["inference"])
    async def infer(name: str, request: Request) -> Response:
        """Open Inference Protocol inference; the outputs are what the key's output policy releases."""
        return await model_request(request, f"infer {request.url.path}", name, oip=True)

    @app.post("/v1/predict", openapi_extra=body_doc(PREDICT_BODY), tags=["inference"])
    async def predict(request: Request) -> Response:
        """Predict classes (and scores, where the key's policy releases them) for a list of rows."""
        return await model_request(request, "predict /v1/predict", None, oip=False)

    @app.get(
        "/v2/models/{name}", openapi_extra={"responses": ERRORS, "security": SECURITY}, tags=["inference"]
    )
    async def model_metadata(name: str, request: Request) -> Response:
        """Open Inference Protocol model metadata (inputs, outputs) plus bounds and the key's policy."""
        trace = Trace(request.state.request_id, f"metadata {request.url.path}", time.perf_counter())
        return await run_in_threadpool(_metadata_sync, gw, trace, token(request), name)


def _service_routes(app: FastAPI, gw: Gateway) -> None:
    from bastion.serve.dashboard import dashboard_route

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
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await run_in_threadpool(gw.metrics.exposition), media_type=CONTENT_TYPE_LATEST)

    dashboard_route(app, gw)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        fix = {404: "; see /docs for the endpoints", 405: "; see /docs for the methods"}.get(
            exc.status_code, ""
        )
        return error(exc.status_code, f"{exc.detail}{fix}", getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return error(400, f"{where}: {first.get('msg', 'invalid')}; see /docs for the request format")
