"""RemoteClassifier against a real local Open Inference Protocol server: answers, accounting, failures."""

from __future__ import annotations

import itertools
import math
import socket
import time

import pytest
import torch
from _oip_server import serve

from bastion.blackbox import QueryCounter
from bastion.errors import RemoteModelError
from bastion.remote import OIPEndpoint, RateLimiter, RemoteClassifier, load_remote, parse_oip_spec

pytest.importorskip("httpx")  # the remote extra: pip install 'bastion[remote]'

FAST = {"max_rps": None, "backoff": 0.01, "trust_env": False}


@pytest.fixture()
def xs(digits_data) -> torch.Tensor:
    return digits_data[2][:40].clone()


def test_same_answers_as_the_local_model(digits_model, xs):
    with serve(digits_model) as server, RemoteClassifier(server.spec(), batch_size=64, **FAST) as remote:
        assert remote.num_classes == 10  # from the metadata, before any inference
        assert remote.input_name == "input-0"
        out = remote(xs)
        local = digits_model(xs)
    assert out.shape == (40, 10) and out.dtype == torch.float32
    assert torch.allclose(out, local, atol=1e-6)
    assert not out.requires_grad


def test_probability_servers_are_turned_back_into_log_scores(digits_model, xs):
    with serve(digits_model, outputs="probabilities") as server:
        remote = RemoteClassifier(server.spec(), outputs="probabilities", **FAST)
        out = remote(xs)
    local = torch.softmax(digits_model(xs), 1)
    assert torch.allclose(torch.softmax(out, 1), local, atol=1e-6)
    assert torch.equal(out.argmax(1), local.argmax(1))


def test_a_wrong_number_of_classes_is_named(digits_model, xs):
    with serve(digits_model) as server:
        remote = RemoteClassifier(server.spec(), num_classes=3, **FAST)
        with pytest.raises(RemoteModelError, match="10 scores per input but num_classes=3"):
            remote(xs[:2])
    assert remote.queries == 0


def test_inputs_are_reshaped_to_the_served_row_shape(digits_model, xs):
    with serve(digits_model, row_shape=(64,)) as server:
        remote = RemoteClassifier(server.spec(), **FAST)
        assert torch.allclose(remote(xs), digits_model(xs), atol=1e-6)
        with pytest.raises(RemoteModelError, match="do not fit"):
            remote(xs[:, :, :4, :])


def test_query_accounting_is_exact(digits_model, xs):
    with serve(digits_model) as server:
        remote = RemoteClassifier(server.spec(), batch_size=7, **FAST)
        remote(xs[:20])
        remote(xs[:5])
        counter = QueryCounter(remote)
        counter(xs[:3])
        posts = server.posts()
        served = len(server.config.log)
    assert [rows for *_, rows in posts] == [7, 7, 6, 5, 3]
    assert (remote.queries, remote.calls, remote.rows_sent, remote.retries) == (28, 3, 28, 0)
    assert remote.requests == served == 1 + 5  # the metadata read and five inference requests
    assert (counter.queries, counter.calls) == (3, 1)


def test_retries_5xx_then_answers(digits_model, xs):
    with serve(digits_model, fail_first=2, fail_status=503) as server:
        remote = RemoteClassifier(server.spec(), retries=3, **FAST)
        out = remote(xs[:4])
        assert len(server.posts()) == 3
    assert torch.allclose(out, digits_model(xs[:4]), atol=1e-6)
    assert (remote.retries, remote.queries, remote.rows_sent, remote.requests) == (2, 4, 12, 1 + 3)


def test_gives_up_after_the_retries_with_one_line(digits_model, xs):
    with serve(digits_model, fail_first=100, fail_status=500) as server:
        remote = RemoteClassifier(server.spec(), retries=2, **FAST)
        with pytest.raises(RemoteModelError) as info:
            remote(xs[:4])
        assert len(server.posts()) == 3
    message = str(info.value)
    assert "\n" not in message
    assert f"{server.base}/v2/models/digits/infer" in message
    assert "HTTP 500" in message and "3 attempt(s)" in message and "logs" in message
    assert remote.queries == 0


def test_429_is_retried_and_client_errors_are_not(digits_model, xs):
    with serve(digits_model, fail_first=1, fail_status=429) as server:
        remote = RemoteClassifier(server.spec(), retries=1, **FAST)
        remote(xs[:2])
        assert len(server.posts()) == 2
    with serve(digits_model, fail_first=5, fail_status=400) as server:
        remote = RemoteClassifier(server.spec(), retries=3, **FAST)
        with pytest.raises(RemoteModelError, match="HTTP 400") as info:
            remote(xs[:2])
        assert len(server.posts()) == 1  # not retried
    assert "input-0" in str(info.value)  # names what was sent


def test_timeout_is_retried_then_fails(digits_model, xs):
    with serve(digits_model, delay=3.0) as server:
        remote = RemoteClassifier(server.spec(), timeout=0.2, retries=1, **FAST)
        start = time.monotonic()
        with pytest.raises(RemoteModelError) as info:
            remote(xs[:2])
        elapsed = time.monotonic() - start
        assert len(server.posts()) == 2
    assert "no answer within 0.2 s after 2 attempt(s)" in str(info.value)
    assert "timeout=" in str(info.value)
    assert elapsed < 2.5  # two 0.2 s timeouts, not the server's 3 s


def test_unknown_model_is_a_one_line_404(digits_model):
    with serve(digits_model) as server:
        with pytest.raises(RemoteModelError) as info:
            RemoteClassifier(server.spec("nope"), **FAST)
        assert len(server.config.log) == 1  # a 404 is not retried
    message = str(info.value)
    assert "\n" not in message
    assert f"{server.base}/v2/models/nope" in message and "404" in message and "'nope'" in message


def test_nothing_listening_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemoteModelError, match=r"connection failed.*1 attempt.*server is running"):
        RemoteClassifier(f"oip:http://127.0.0.1:{port}/models/m", retries=0, **FAST)


def test_rate_cap_spaces_the_requests(digits_model, xs):
    rate = 20.0
    with serve(digits_model) as server:
        remote = RemoteClassifier(server.spec(), max_rps=rate, burst=1, trust_env=False)
        sent: list[float] = []  # when each request leaves the client (after the limiter)
        remote._client.event_hooks["request"].append(lambda request: sent.append(time.monotonic()))
        for i in range(8):
            remote(xs[i : i + 1])
        seen = [t for t, *_ in server.config.log]  # metadata GET + 8 POSTs, as the server saw them
    assert len(sent) == 8 and len(seen) == 9
    # burst 1: the limiter releases requests j - i apart at least (j - i) / rate seconds apart (exactly so
    # in the fake-clock test below). The hook fires a scheduling delay after the release, and a delay on
    # request i (not on j) shortens the measured gap: allow one interval of it per pair, half over the run.
    for i, j in itertools.combinations(range(len(sent)), 2):
        assert sent[j] - sent[i] >= (j - i - 1) / rate
    assert sent[-1] - sent[0] >= (len(sent) - 1) / rate - 0.5 / rate
    # the server sees the same pace (its timestamps carry thread-scheduling jitter, hence the slack)
    assert seen[-1] - seen[0] >= 8 / rate - 0.1


def test_rate_limiter_token_bucket_with_a_fake_clock():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = RateLimiter(2.0, burst=3, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(9):
        bucket.acquire()
        stamps.append(now[0])
    assert stamps[:3] == [0.0, 0.0, 0.0]  # the burst
    assert stamps[3:] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])  # then 2 per second
    for i, t in enumerate(stamps):  # any window [t, t + T] holds at most burst + rate * T requests
        for j in range(i, len(stamps)):
            assert j - i + 1 <= 3 + 2.0 * (stamps[j] - t) + 1e-9
    assert RateLimiter(None).acquire() == 0.0
    assert RateLimiter(math.inf).rate is None
    for bad in ({"rate": 0.0}, {"rate": -1.0}, {"rate": 1.0, "burst": 0}):
        with pytest.raises(RemoteModelError):
            RateLimiter(**bad)  # type: ignore[arg-type]


def test_ready_and_load_remote_with_spec_options(digits_model, xs):
    with serve(digits_model) as server:
        remote = load_remote(server.spec() + "?max_rps=none&batch_size=5&timeout=3", trust_env=False)
        assert remote.ready()
        assert remote.limiter.rate is None and remote.batch_size == 5 and remote.timeout == 3.0
        remote(xs[:12])
        assert [rows for *_, rows in server.posts()] == [5, 5, 2]
        # keyword options override the spec; None means "not given"
        other = load_remote(server.spec() + "?batch_size=5", batch_size=50, num_classes=None, trust_env=False)
        assert other.batch_size == 50 and other.num_classes == 10
    with pytest.raises(RemoteModelError, match="drop --weights"):
        load_remote("oip:http://127.0.0.1:1/models/m", weights="w.safetensors")


@pytest.mark.parametrize(
    ("spec", "base", "name", "version"),
    [
        ("oip:http://localhost:8000/models/digits", "http://localhost:8000", "digits", None),
        ("oip:https://api.example.com/models/m/", "https://api.example.com", "m", None),
        ("oip:http://h:1/v2/models/m/versions/3", "http://h:1", "m", "3"),
        ("oip:http://h/serving/team/models/m", "http://h/serving/team", "m", None),
    ],
)
def test_spec_forms(spec, base, name, version):
    endpoint, options = parse_oip_spec(spec)
    assert endpoint == OIPEndpoint(base, name, version)
    assert options == {}
    assert parse_oip_spec(endpoint.spec)[0] == endpoint
    assert endpoint.infer_url.endswith(
        f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    )


@pytest.mark.parametrize(
    "spec",
    [
        "oip:localhost:8000/models/m",
        "oip:ftp://h/models/m",
        "oip:http://h:1/m",
        "oip:http://h:1/models/",
        "oip:http://h:1/models/m?colour=red",
        "oip:http://h:1/models/m?retries=many",
    ],
)
def test_bad_specs_say_the_form(spec):
    with pytest.raises(RemoteModelError) as info:
        parse_oip_spec(spec)
    assert "\n" not in str(info.value)
    assert "/models/NAME" in str(info.value) or "option" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"outputs": "scores"},
        {"retries": -1},
        {"batch_size": 0},
        {"timeout": -1.0},
        {"timeout": 0},
        {"num_classes": 1},
    ],
)
def test_bad_options(bad):
    with pytest.raises(RemoteModelError):
        RemoteClassifier("oip:http://127.0.0.1:1/models/m", probe=False, **bad)
