"""The gateway app end to end in-process (TestClient) and over real HTTP (uvicorn in a thread), with the
real key store and audit log (SQLite in tmp_path) and the real in-memory limiter."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from bastion.loading import load_model
from bastion.serve.app import REQUEST_ID_HEADER, create_app
from bastion.serve.audit_log import AuditLog
from bastion.serve.config import GatewayConfig
from bastion.serve.keys import KeyStore, Scope
from bastion.serve.limits import MemoryLimiter
from bastion.serve.process import free_port

try:
    from bastion.serve.detect import Flag
except ImportError:  # the detectors land separately: the contract's Flag

    class Flag(NamedTuple):  # type: ignore[no-redef]
        detector: str
        score: float
        threshold: float
        message: str


FAST = {"rate": 1000.0, "burst": 1000, "daily_quota": None}
ROW = [[[0.0] * 8] * 8]  # one digits row (1, 8, 8) of zeros


class Counting:
    """The digits model, counting its calls: malformed requests must never reach it."""

    def __init__(self) -> None:
        self.inner = load_model("zoo:digits-cnn")
        self.bounds = self.inner.bounds
        self.name = self.inner.name
        self.calls = 0

    @property
    def num_classes(self) -> int | None:
        return self.inner.num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


class AlwaysFlags:
    name = "always"

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

    def observe(self, key_id: str, x: torch.Tensor, released: torch.Tensor) -> list[Flag]:
        self.seen.append((key_id, tuple(x.shape), tuple(released.shape)))
        return [Flag("always", 1.0, 0.5, "flags everything")]

    def memory_bytes(self) -> int:
        return 0


class Broken:
    name = "broken"

    def observe(self, key_id: str, x: torch.Tensor, released: torch.Tensor) -> list[Flag]:
        raise RuntimeError("detector bug")

    def memory_bytes(self) -> int:
        return 0


class Gateway:
    def __init__(self, tmp_path: Path, detectors: tuple = (), **config: Any) -> None:
        db = f"sqlite:///{tmp_path}/gw-{time.monotonic_ns()}.db"
        self.model = Counting()
        self.keys, self.log = KeyStore(db), AuditLog(db)
        self.config = GatewayConfig(models={"digits": "zoo:digits-cnn"}, db=db, **config)
        self.app = create_app(
            self.config,
            models={"digits": self.model},
            keys=self.keys,
            limiter=MemoryLimiter(),
            log=self.log,
            detectors=detectors,
        )
        self.client = TestClient(self.app)

    def key(self, **scope: Any) -> tuple[str, str]:
        key, token = self.keys.create("k", Scope(**{**FAST, **scope}))
        return key.key_id, token

    def predict(self, token: str | None, inputs: Any = None, model: str = "digits", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {"model": model, "inputs": [ROW] if inputs is None else inputs}
        return self.client.post("/v1/predict", json=body, headers=headers, **kw)

    def infer(self, token: str, x: torch.Tensor, name: str = "digits", **over: Any) -> Any:
        tensor = {"name": "input-0", "shape": list(x.shape), "datatype": "FP32", "data": x.flatten().tolist()}
        return self.client.post(
            f"/v2/models/{name}/infer", json={"inputs": [{**tensor, **over}]}, headers={"X-API-Key": token}
        )


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


def digits(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g)


# -- authentication and authorisation --------------------------------------------------------------------


def test_no_prediction_without_a_valid_key(gw: Gateway) -> None:
    _, token = gw.key()
    other_id, other = gw.key(models=("elsewhere",))
    revoked_id, revoked = gw.key()
    gw.keys.revoke(revoked_id)
    cases = [
        (gw.predict(None), 401, None),
        (gw.client.post("/v1/predict", json={}, headers={"Authorization": "Basic abc"}), 401, None),
        (gw.predict("bst_0000000000000000_wrong"), 401, None),
        (gw.predict(token[:-2] + "xx"), 401, None),
        (gw.predict(revoked), 403, revoked_id),
        (gw.predict(other), 403, other_id),
        (gw.client.get("/v2/models/digits", headers={"X-API-Key": other}), 403, other_id),
        (gw.client.get("/v2/models/digits"), 401, None),
    ]
    for response, status, _ in cases:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}
        assert "scores" not in response.text and "labels" not in response.text
    assert cases[0][0].headers["WWW-Authenticate"] == "Bearer"
    assert gw.model.calls == 0
    records = gw.log.records()
    assert [(r.status, r.key_id) for r in records] == [(s, k) for _, s, k in cases]
    assert all(r.output is None and r.input_digest is None for r in records)
    dumped = json.dumps([r.to_dict() for r in records])
    for secret in (token, other, revoked):
        assert secret.split("_")[-1] not in dumped  # the key id is recorded, the token never
    assert gw.predict(token).status_code == 200


def test_unknown_model_is_404_and_lists_only_the_keys_models(gw: Gateway) -> None:
    _, token = gw.key()
    response = gw.predict(token, model="nope")
    assert response.status_code == 404 and "digits" in response.json()["error"]
    assert gw.client.post("/v2/models/nope/infer", json={}, headers={"X-API-Key": token}).status_code == 404
    assert gw.predict(token, model=None).status_code == 400  # type: ignore[arg-type]


# -- limits -----------------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(gw: Gateway) -> None:
    key_id, token = gw.key(rate=0.01, burst=2)
    statuses = [gw.predict(token).status_code for _ in range(2)]
    refused = gw.predict(token)
    assert statuses == [200, 200] and refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1 and "rate limit" in refused.json()["error"]
    assert gw.model.calls == 2
    assert [r.status for r in gw.log.records(key_id=key_id)] == [200, 200, 429]
    _, fresh = gw.key(rate=0.01, burst=2)
    assert gw.predict(fresh).status_code == 200  # per key


def test_daily_quota_counts_rows(gw: Gateway) -> None:
    _, token = gw.key(daily_quota=3)
    assert gw.predict(token, inputs=[ROW, ROW]).status_code == 200
    refused = gw.predict(token, inputs=[ROW, ROW])
    assert refused.status_code == 429 and "quota" in refused.json()["error"]
    assert gw.predict(token, inputs=[ROW]).status_code == 200


# -- validation -------------------------------------------------------------------------------------------

NAN_BODY = '{"model": "digits", "inputs": [[' + ",".join(["NaN"] + ["0"] * 63) + "]]}"


@pytest.mark.parametrize(
    ("kind", "body", "status", "field"),
    [
        ("predict", "{not json", 400, "body"),
        ("predict", "", 400, "body"),
        ("predict", NAN_BODY, 400, "inputs"),
        ("predict", {"model": "digits", "inputs": [[2.0] * 64]}, 400, "inputs"),
        ("predict", {"model": "digits", "inputs": [[0.0] * 63]}, 400, "inputs"),
        ("predict", {"model": "digits", "inputs": [["x"] * 64]}, 400, "inputs"),
        ("predict", {"model": "digits", "inputs": [[0.0] * 64] * 65}, 413, "inputs"),
        ("predict", {"model": "digits", "inputs": "zeros"}, 400, "inputs"),
        (
            "infer",
            {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "INT32", "data": [0] * 64}]},
            400,
            "inputs[0].datatype",
        ),
        (
            "infer",
            {"inputs": [{"name": "input-0", "shape": [1, 1, 8, 7], "datatype": "FP32", "data": [0] * 56}]},
            400,
            "inputs[0].shape",
        ),
        (
            "infer",
            {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [0] * 60}]},
            400,
            "inputs[0].data",
        ),
        (
            "infer",
            {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]},
            400,
            "inputs[0].name",
        ),
        ("infer", {"outputs": []}, 400, "inputs"),
    ],
)
def test_malformed_inputs_are_4xx_naming_the_field_and_never_reach_the_model(
    gw: Gateway, kind: str, body: Any, status: int, field: str
) -> None:
    key_id, token = gw.key()
    url = "/v1/predict" if kind == "predict" else "/v2/models/digits/infer"
    content = body if isinstance(body, str) else json.dumps(body)
    response = gw.client.post(
        url, content=content, headers={"X-API-Key": token, "Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(field + ": ")
    assert gw.model.calls == 0
    (record,) = gw.log.records(key_id=key_id)
    assert record.status == status and record.output is None


def test_body_size_is_checked_before_parsing(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, max_body_bytes=2048)
    _, token = gw.key()
    big = gw.predict(token, inputs=[ROW] * 20)
    assert big.status_code == 413 and big.json()["error"].startswith("body: ")
    # a body without Content-Length (chunked) is cut off while streaming
    chunks = (b"x" * 1024 for _ in range(10))
    streamed = gw.client.post("/v1/predict", content=chunks, headers={"X-API-Key": token})
    assert streamed.status_code == 413
    assert gw.model.calls == 0 and gw.predict(token).status_code == 200


# -- output policy ----------------------------------------------------------------------------------------


def test_labels_key_never_sees_probabilities(gw: Gateway) -> None:
    _, token = gw.key(output="labels")
    x = digits()
    expected = gw.model.inner(x).argmax(1)
    answer = gw.predict(token, inputs=x.tolist()).json()
    assert answer["policy"] == "labels" and "scores" not in answer
    assert answer["labels"] == expected.tolist()
    out = gw.infer(token, x).json()["outputs"][0]
    matrix = torch.tensor(out["data"]).reshape(out["shape"])
    assert out["shape"] == [6, 10] and set(matrix.flatten().tolist()) <= {0.0, 1.0}
    assert torch.equal(matrix.sum(1), torch.ones(6)) and torch.equal(matrix.argmax(1), expected)


@pytest.mark.parametrize("policy", ["probs", "top2", "round1"])
def test_the_keys_policy_is_applied_last(gw: Gateway, policy: str) -> None:
    from bastion.defenses.output_policy import OutputPolicy

    _, token = gw.key(output=policy)
    x = digits()
    expected = OutputPolicy.parse(policy).apply(gw.model.inner(x))
    answer = gw.predict(token, inputs=x.tolist()).json()
    assert answer["policy"] == policy
    assert torch.allclose(torch.tensor(answer["scores"]), expected, atol=1e-6)
    assert answer["labels"] == expected.argmax(1).tolist()
    out = gw.infer(token, x).json()
    assert out["parameters"] == {"output_policy": policy}
    assert torch.allclose(torch.tensor(out["outputs"][0]["data"]).reshape(6, 10), expected, atol=1e-6)
    if policy == "top2":
        assert int((torch.tensor(answer["scores"]) > 0).sum(1).max()) <= 2


# -- audit ------------------------------------------------------------------------------------------------


def test_one_audit_record_per_request_before_the_response(gw: Gateway) -> None:
    key_id, token = gw.key(output="probs")
    x = digits(3)
    responses = [
        gw.predict(token, inputs=x.tolist()),
        gw.infer(token, x),
        gw.predict(None),
        gw.predict(token, []),
    ]
    responses.append(gw.client.get("/v2/models/digits", headers={"X-API-Key": token}))
    records = gw.log.records()
    assert len(records) == len(responses)
    for response, record in zip(responses, records, strict=True):
        assert response.headers[REQUEST_ID_HEADER] == record.request_id
        assert record.status == response.status_code and record.latency_ms > 0
    first = records[0]
    assert first.key_id == key_id and first.model == "digits" and first.rows == 3 and first.policy == "probs"
    assert first.input_digest == hashlib.sha256(x.numpy().tobytes()).hexdigest()
    assert first.output == {"scores": responses[0].json()["scores"]}
    assert records[1].input_digest == first.input_digest and records[1].endpoint.startswith("infer ")
    assert len({r.request_id for r in records}) == len(records)
    assert gw.log.verify().ok
    assert gw.client.get("/healthz").status_code == 200 and len(gw.log.records()) == len(records)


def test_labels_audit_output_is_the_labels(gw: Gateway) -> None:
    _, token = gw.key(output="labels")
    answer = gw.predict(token, inputs=digits(2).tolist()).json()
    assert gw.log.records()[-1].output == {"labels": answer["labels"]}


class FailingLog:
    def append(self, record: Any) -> int:
        raise OSError("disk full")


def test_no_answer_without_a_durable_record(gw: Gateway) -> None:
    _, token = gw.key(output="probs")
    app = create_app(
        gw.config, models={"digits": gw.model}, keys=gw.keys, limiter=MemoryLimiter(), log=FailingLog()
    )  # type: ignore[arg-type]
    response = TestClient(app).post(
        "/v1/predict", json={"model": "digits", "inputs": [ROW]}, headers={"X-API-Key": token}
    )
    assert response.status_code == 503 and "scores" not in response.text and "audit log" in response.text


# -- detectors --------------------------------------------------------------------------------------------


def test_detector_flags_are_recorded_and_counted(tmp_path: Path) -> None:
    flags = AlwaysFlags()
    gw = Gateway(tmp_path, detectors=(flags, Broken()))
    key_id, token = gw.key(output="labels")
    assert gw.predict(token, inputs=digits(2).tolist()).status_code == 200  # a broken detector is skipped
    assert flags.seen == [(key_id, (2, 1, 8, 8), (2, 10))]
    assert gw.log.records()[-1].flags == ("always: flags everything",)
    assert 'bastion_gateway_detector_flags_total{detector="always"} 1.0' in gw.client.get("/metrics").text


@pytest.mark.parametrize(("policy", "first", "then"), [("block", 403, 403), ("throttle", 200, 429)])
def test_detection_policies(tmp_path: Path, policy: str, first: int, then: int) -> None:
    gw = Gateway(tmp_path, detectors=(AlwaysFlags(),), on_detection=policy)
    _, token = gw.key()
    response = gw.predict(token)
    assert response.status_code == first and ("labels" in response.json()) == (first == 200)
    assert gw.predict(token).status_code == then
    _, other = gw.key()
    assert gw.predict(other).status_code == first  # per key


# -- metrics ----------------------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(
                p.split("=", 1) for p in line[line.find("{") + 1 : line.find("}")].split(",") if "=" in p
            )
            if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_latency_and_limits(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    _, token = gw.key(rate=0.01, burst=3)
    for _ in range(3):
        gw.predict(token)
    gw.predict(token)
    gw.predict(None)
    text = gw.client.get("/metrics").text
    assert (
        metric(text, "bastion_gateway_requests_total", endpoint="predict", model="digits", status="200") == 3
    )
    assert metric(text, "bastion_gateway_requests_total", endpoint="predict", status="429") == 1
    assert metric(text, "bastion_gateway_requests_total", endpoint="predict", status="401") == 1
    assert metric(text, "bastion_gateway_rate_limited_total", reason="rate") == 1
    assert metric(text, "bastion_gateway_request_seconds_count", endpoint="predict") == 5
    assert metric(text, "bastion_gateway_rows_total", model="digits") == 3
    other = Gateway(tmp_path)  # its own registry: nothing shared
    assert metric(other.client.get("/metrics").text, "bastion_gateway_rows_total", model="digits") == 0


def test_health_endpoints_need_no_key(gw: Gateway) -> None:
    for path in ("/healthz", "/v2/health/live", "/readyz", "/v2/health/ready"):
        assert gw.client.get(path).status_code == 200
    assert gw.client.get("/readyz").json() == {"ready": True, "models": ["digits"]}
    missing = gw.client.get("/nope")
    assert missing.status_code == 404 and "error" in missing.json() and REQUEST_ID_HEADER in missing.headers


# -- over real HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    import uvicorn

    gw = Gateway(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(gw.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield gw, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_remote_classifier_through_the_gateway_equals_the_local_model(served: tuple[Gateway, str]) -> None:
    from bastion.errors import RemoteModelError
    from bastion.remote import RemoteClassifier

    gw, base = served
    _, token = gw.key(output="probs")
    x = digits(20, seed=3)
    headers = {"Authorization": f"Bearer {token}"}
    with RemoteClassifier(
        f"oip:{base}/models/digits", outputs="probabilities", headers=headers, max_rps=None, batch_size=8
    ) as remote:
        assert remote.num_classes == 10 and remote.ready()
        got = torch.softmax(remote(x), dim=1)
        assert remote.requests == 1 + 1 + 3  # metadata, ready, three batches
    expected = torch.softmax(gw.model.inner(x), dim=1)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    with pytest.raises(RemoteModelError, match="401"):
        RemoteClassifier(f"oip:{base}/models/digits", max_rps=None, retries=0)
    assert math.isclose(len(gw.log.records()), 5)  # metadata + 3 inferences + the refused probe


# -- the OpenAPI document, fuzzed -------------------------------------------------------------------------


def test_openapi_document_fuzzed_gives_no_server_error(gw: Gateway) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _, token = gw.key(output="probs")
    schema = schemathesis.openapi.from_asgi("/openapi.json", gw.app)
    paths = set(schema.raw_schema["paths"])
    assert {"/v1/predict", "/v2/models/{name}/infer", "/v2/models/{name}"} <= paths
    assert set(schema.raw_schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    seen: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(), served=st.booleans())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any, served: bool) -> None:
            if served:  # half the cases name the served model, to get past the 404 into validation
                if case.path_parameters and "name" in case.path_parameters:
                    case.path_parameters["name"] = "digits"
                if isinstance(case.body, dict):
                    case.body["model"] = "digits"
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        no_server_error()
    assert sum(seen.values()) >= 80 and {200, 400, 404} <= set(seen), seen


def test_a_failing_model_is_a_recorded_500_and_the_gateway_keeps_serving(gw: Gateway) -> None:
    key_id, token = gw.key()

    def boom(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("CUDA out of memory")

    real = gw.model.inner
    gw.model.inner = boom  # type: ignore[assignment]
    response = gw.predict(token)
    assert response.status_code == 500 and "CUDA" not in response.text
    assert response.headers[REQUEST_ID_HEADER] in response.json()["error"]
    gw.model.inner = real
    assert gw.predict(token).status_code == 200
    assert [r.status for r in gw.log.records(key_id=key_id)] == [500, 200]
