"""Remote classifiers: a model behind an HTTP endpoint speaking the Open Inference Protocol (KServe v2 REST).

The protocol (what KServe, NVIDIA Triton and Seldon MLServer serve; spec:
https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/):

- ``POST {base}/v2/models/{name}[/versions/{v}]/infer`` with
  ``{"inputs": [{"name", "shape", "datatype": "FP32", "data": [row-major values]}]}``, answered with
  ``{"outputs": [{"name", "shape", "datatype", "data"}]}``; errors are ``{"error": "..."}``.
- ``GET {base}/v2/models/{name}``: metadata (``inputs``/``outputs`` with ``name``, ``datatype``, ``shape``;
  -1 marks the batch dimension); ``GET {base}/v2/health/ready``: the server is ready.

The model spec is ``oip:http://host:port/models/NAME`` (``https`` too; ``/versions/V`` picks a version; a
path prefix before ``/models`` is kept, ``/v2`` before it is accepted). Transport options may ride in the
query string, e.g. ``oip:http://host:8000/models/digits?max_rps=5&outputs=probabilities`` (see
:func:`parse_oip_spec`). httpx is needed (``pip install 'bastion[remote]'``) and imported lazily.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

import torch

from bastion.errors import RemoteModelError
from bastion.threat import Bounds, check_bounds

__all__ = [
    "OIPEndpoint",
    "RateLimiter",
    "RemoteClassifier",
    "RemoteTextClassifier",
    "load_remote",
    "load_remote_text",
    "parse_oip_spec",
]

log = logging.getLogger(__name__)

Outputs = Literal["logits", "probabilities"]
TOKEN_ENV = "BASTION_API_KEY"  # an API key for the server, sent as a bearer token by load_remote
_FLOOR = 1e-12  # probabilities below it become log(1e-12) (as bastion.defenses.output_policy.FLOOR)
_MAX_WAIT = 30.0  # seconds: the longest backoff or Retry-After honoured between two attempts
_FLOAT_TYPES = {"FP16": torch.float16, "FP32": torch.float32, "FP64": torch.float64}
_PATH = re.compile(r"^(?P<prefix>.*?)(?:/v2)?/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/?$")
_SPEC_FORM = "oip:http://HOST:PORT/models/NAME (or oip:https://..., optionally /versions/V)"
# option -> parser, for the query string of a spec
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "timeout": float,
    "retries": int,
    "backoff": float,
    "max_rps": lambda v: None if v.lower() in ("none", "inf", "off") else float(v),
    "burst": int,
    "batch_size": int,
    "outputs": str,
    "num_classes": int,
    "input_name": str,
    "output_name": str,
}


@dataclass(frozen=True)
class OIPEndpoint:
    """Where a model is served: ``base`` (``scheme://host:port[/prefix]``), model ``name``, ``version``."""

    base: str
    name: str
    version: str | None = None

    @property
    def model_url(self) -> str:
        version = f"/versions/{self.version}" if self.version else ""
        return f"{self.base}/v2/models/{self.name}{version}"

    @property
    def infer_url(self) -> str:
        return f"{self.model_url}/infer"

    @property
    def ready_url(self) -> str:
        return f"{self.base}/v2/health/ready"

    @property
    def spec(self) -> str:
        version = f"/versions/{self.version}" if self.version else ""
        return f"oip:{self.base}/models/{self.name}{version}"


def parse_oip_spec(spec: str) -> tuple[OIPEndpoint, dict[str, Any]]:
    """The endpoint of ``oip:http://host:port/models/NAME[?option=value&...]`` and its query options.

    Options: timeout, retries, backoff, max_rps (``none`` lifts the cap), burst, batch_size, outputs,
    num_classes, input_name, output_name (see :class:`RemoteClassifier`)."""
    text = spec[len("oip:") :] if spec.startswith("oip:") else spec
    parts = urlsplit(text)
    match = _PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.netloc or match is None or parts.fragment:
        raise RemoteModelError(f"{spec!r} is not a remote model spec; write it as {_SPEC_FORM}")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise RemoteModelError(
                f"{spec!r}: unknown option {key!r}; valid options: {', '.join(sorted(_OPTIONS))}"
            )
        try:
            options[key] = _OPTIONS[key](value)
        except ValueError:
            raise RemoteModelError(f"{spec!r}: option {key}={value!r} is not a valid value") from None
    base = f"{parts.scheme}://{parts.netloc}{match['prefix']}"
    return OIPEndpoint(base, match["name"], match["version"]), options


class RateLimiter:
    """Token bucket: at most ``burst + rate * T`` acquisitions in any window of T seconds.

    ``acquire()`` blocks (sleeps) until a token is available. ``rate=None`` never blocks."""

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and math.isinf(rate):
            rate = None
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise RemoteModelError(
                f"max_rps must be a number of requests per second > 0 or None, got {rate!r}"
            )
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise RemoteModelError(f"burst must be a whole number of requests >= 1, got {burst!r}")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; returns the seconds slept for it."""
        if self.rate is None:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + max(0.0, now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            wait = (1.0 - self._tokens) / self.rate
            self._sleep(wait)
            self._tokens = 0.0
            self._last = max(self._clock(), now + wait)
            return wait


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class RemoteClassifier:
    """A Classifier whose forward pass is an Open Inference Protocol request; outputs only, no gradients.

    ``__call__(x)`` sends ``x`` (N, ...) in requests of at most ``batch_size`` rows, one at a time, and
    returns (N, K) logits on ``x``'s device: the server's logits (``outputs="logits"``) or, when it answers
    probabilities, their log (``outputs="probabilities"``; floored at 1e-12, so softmax of it gives the
    probabilities back).

    Accounting (exact): ``queries`` rows answered, ``calls`` calls of ``__call__``, ``requests`` HTTP
    requests sent (metadata and retries included: what the server sees), ``rows_sent`` rows in every
    inference request sent (retries included), ``retries`` attempts repeated.

    Safety: every request first takes a token from a :class:`RateLimiter` (``max_rps`` requests per
    second with bursts of ``burst``; default 10/s, ``max_rps=None`` lifts the cap). Connection errors,
    timeouts (``timeout`` seconds), HTTP 5xx and 429 are retried ``retries`` times after
    ``backoff * 2**attempt`` seconds (or the server's Retry-After, up to 30 s); other 4xx are not. Every
    failure raises :class:`~bastion.errors.RemoteModelError`, one line naming the URL and the fix.

    ``probe=True`` reads the model's metadata at construction (fails early on a wrong address or name;
    gives ``num_classes``, the input name, datatype and per-row shape: inputs with the same number of
    values are reshaped to it). ``num_classes`` otherwise comes from the first answer.
    """

    INPUT_TYPES: tuple[str, ...] = tuple(_FLOAT_TYPES)  # what this client sends; the first by default

    def __init__(
        self,
        url: str | OIPEndpoint,
        *,
        bounds: Bounds = (0.0, 1.0),
        num_classes: int | None = None,
        outputs: Outputs = "logits",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_rps: float | None = 10.0,
        burst: int = 1,
        batch_size: int = 256,
        input_name: str | None = None,
        output_name: str | None = None,
        headers: Mapping[str, str] | None = None,
        probe: bool = True,
        trust_env: bool = True,
    ) -> None:
        self.endpoint = url if isinstance(url, OIPEndpoint) else parse_oip_spec(url)[0]
        self.bounds = check_bounds(bounds)
        if outputs not in ("logits", "probabilities"):
            raise RemoteModelError(f"outputs must be 'logits' or 'probabilities', got {outputs!r}")
        for name, value, low in (("retries", retries, 0), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise RemoteModelError(f"{name} must be a whole number >= {low}, got {value!r}")
        for name, number, zero in (("timeout", timeout, False), ("backoff", backoff, True)):
            if not (isinstance(number, int | float) and math.isfinite(number) and number >= 0):
                raise RemoteModelError(f"{name} must be a number of seconds >= 0, got {number!r}")
            if number == 0 and not zero:
                raise RemoteModelError(f"{name} must be a number of seconds > 0, got {number!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise RemoteModelError(f"num_classes must be an integer >= 2 or None, got {num_classes!r}")
        self.outputs: Outputs = outputs
        self.timeout, self.retries_allowed, self.backoff = float(timeout), retries, float(backoff)
        self.batch_size = batch_size
        self.limiter = RateLimiter(max_rps, burst)
        self.input_name, self.output_name = input_name, output_name
        self._num_classes = num_classes
        self._datatype = self.INPUT_TYPES[0]
        self._row_shape: tuple[int, ...] | None = None
        self.queries = self.calls = self.requests = self.rows_sent = self.retries = 0
        self.metadata: dict[str, Any] | None = None
        try:
            import httpx
        except ImportError:
            raise RemoteModelError(
                f"{self.endpoint.spec} needs httpx; install it with pip install 'bastion[remote]'"
            ) from None
        self._client = httpx.Client(timeout=self.timeout, headers=dict(headers or {}), trust_env=trust_env)
        if probe:
            try:
                self._read_metadata()
            except BaseException:
                self._client.close()
                raise

    # -- the Classifier contract -------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> RemoteClassifier:
        """Outputs land on the input's device anyway; returns self (for code that moves models)."""
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) for ``x`` (N, ...); one request per ``batch_size`` rows. No gradient flows."""
        x = x.detach()
        outs = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size]
            outs.append(self._infer(chunk))
            self.queries += int(chunk.shape[0])
        self.calls += 1
        k = self._num_classes or 0
        out = torch.cat(outs) if outs else torch.zeros(0, k)
        if self.outputs == "probabilities":
            out = out.clamp_min(_FLOOR).log()
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return out.to(device=x.device, dtype=dtype)

    # -- protocol ------------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Whether ``GET /v2/health/ready`` answers 200 (one request, no retries)."""
        import httpx

        self.limiter.acquire()
        self.requests += 1
        try:
            return self._client.get(self.endpoint.ready_url).status_code == 200
        except httpx.HTTPError:
            return False

    def _read_metadata(self) -> None:
        meta = self._request("GET", self.endpoint.model_url)
        self.metadata = meta
        inputs, outputs = meta.get("inputs") or [], meta.get("outputs") or []
        chosen = next((t for t in inputs if t.get("name") == self.input_name), inputs[0] if inputs else None)
        if chosen is not None:
            self.input_name = self.input_name or chosen.get("name")
            datatype = chosen.get("datatype", self._datatype)
            if datatype not in self.INPUT_TYPES:
                other = "RemoteTextClassifier (a text model)" if datatype == "BYTES" else "RemoteClassifier"
                raise RemoteModelError(
                    f"{self.endpoint.model_url}: the model's input {self.input_name!r} is {datatype}; "
                    f"{type(self).__name__} sends {', '.join(self.INPUT_TYPES)}: serve that input, or load "
                    f"it as {other}"
                )
            self._datatype = datatype
            shape = chosen.get("shape") or []
            if len(shape) > 1 and shape[0] == -1 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
                self._row_shape = tuple(shape[1:])
        out = next((t for t in outputs if t.get("name") == self.output_name), outputs[0] if outputs else None)
        if out is not None:
            shape = out.get("shape") or []
            k = shape[-1] if shape else -1
            if self._num_classes is None and isinstance(k, int) and k >= 2:
                self._num_classes = k
        # what a server states about itself wins over the defaults (a bastion gateway states both): its
        # largest batch (else every request of a larger batch_size is refused 413), and that it answers
        # released probabilities under an output policy, never logits
        params = meta.get("parameters") or {}
        most = params.get("max_batch") if isinstance(params, dict) else None
        if isinstance(most, int) and not isinstance(most, bool) and 0 < most < self.batch_size:
            self.batch_size = most
        if isinstance(params, dict) and "output_policy" in params:
            self.outputs = "probabilities"

    def _infer(self, chunk: torch.Tensor) -> torch.Tensor:
        n, row = int(chunk.shape[0]), tuple(chunk.shape[1:])
        if self._row_shape is not None and row != self._row_shape:
            if math.prod(row) != math.prod(self._row_shape):
                raise RemoteModelError(
                    f"{self.endpoint.infer_url}: inputs of shape {row} do not fit the model's input shape "
                    f"{list(self._row_shape)} (from its metadata); send inputs with that many values"
                )
            row = self._row_shape
        data = chunk.to(device="cpu", dtype=_FLOAT_TYPES[self._datatype]).flatten().tolist()
        name = self.input_name or "input-0"
        return self._post({"name": name, "shape": [n, *row], "datatype": self._datatype, "data": data}, n)

    def _post(self, tensor: dict[str, Any], n: int) -> torch.Tensor:
        """One inference request with the input ``tensor`` (name, shape, datatype, data) of ``n`` rows;
        the (n, K) scores it answers."""
        body: dict[str, Any] = {"inputs": [tensor]}
        if self.output_name:
            body["outputs"] = [{"name": self.output_name}]
        self.rows_sent += n  # _request adds n again for each retry
        answer = self._request("POST", self.endpoint.infer_url, body, rows=n)
        return self._parse_output(answer, n)

    def _parse_output(self, answer: dict[str, Any], n: int) -> torch.Tensor:
        url = self.endpoint.infer_url
        outputs = answer.get("outputs")
        if not isinstance(outputs, list) or not outputs:
            raise RemoteModelError(
                f"{url} answered without 'outputs'; is it an Open Inference Protocol server?"
            )
        out = next((o for o in outputs if o.get("name") == self.output_name), outputs[0])
        try:
            values = torch.tensor(out["data"], dtype=torch.float64).reshape(list(out["shape"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise RemoteModelError(
                f"{url} answered a malformed output tensor ({_one_line(str(exc), 120)}); "
                "check that the server speaks the Open Inference Protocol"
            ) from None
        values = values.reshape(n, -1) if values.dim() != 2 and values.numel() % max(n, 1) == 0 else values
        if values.dim() != 2 or values.shape[0] != n:
            raise RemoteModelError(
                f"{url} answered shape {list(values.shape)} for {n} inputs; expected [{n}, num_classes]: "
                "name the class-score output with output_name="
            )
        if self._num_classes is None:
            self._num_classes = int(values.shape[1])
        elif values.shape[1] != self._num_classes:
            raise RemoteModelError(
                f"{url} answered {values.shape[1]} scores per input but num_classes={self._num_classes}; "
                "fix num_classes= or output_name="
            )
        return values.to(torch.float32)

    def _request(self, method: str, url: str, body: dict[str, Any] | None = None, *, rows: int = 0) -> Any:
        import httpx

        attempts = self.retries_allowed + 1
        problem, fix = "", ""
        for attempt in range(attempts):
            if attempt:
                self.retries += 1
                self.rows_sent += rows
            self.limiter.acquire()
            self.requests += 1
            retry_after: float | None = None
            try:
                response = self._client.request(method, url, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout:g} s"
                fix = f"raise timeout= (now {self.timeout:g}) or lower batch_size= (now {self.batch_size})"
            except httpx.TransportError as exc:
                problem = f"connection failed ({_one_line(str(exc) or type(exc).__name__, 120)})"
                fix = "check that the server is running and that the address in the spec is right"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise RemoteModelError(
                            f"{url} answered HTTP 200 with a body that is not JSON; "
                            "check that the server speaks the Open Inference Protocol (KServe v2)"
                        ) from None
                said = _error_text(response)
                problem = f"HTTP {status}{': ' + said if said else ''}"
                if status != 429 and status < 500:
                    raise RemoteModelError(f"{url}: {problem}; {_client_error_fix(status, self, body)}")
                fix = (
                    "the server is rate-limiting: lower max_rps="
                    if status == 429
                    else "the server is failing: check its logs, or retry later"
                )
                retry_after = _retry_after(response)
            if attempt + 1 < attempts:
                wait = min(_MAX_WAIT, retry_after if retry_after is not None else self.backoff * 2**attempt)
                log.info("%s %s: %s; retrying in %.2f s", method, url, problem, wait)
                time.sleep(wait)
        raise RemoteModelError(f"{url}: {problem} after {attempts} attempt(s); {fix}")

    # -- lifetime ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> RemoteClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RemoteClassifier({self.endpoint.spec}, bounds={self.bounds}, num_classes={self._num_classes}, "
            f"queries={self.queries}, requests={self.requests})"
        )


class RemoteTextClassifier(RemoteClassifier):
    """A text classifier behind the Open Inference Protocol: ``model(texts) -> logits (N, K)``.

    Texts travel as one ``BYTES`` input tensor of shape ``[n]`` whose JSON ``data`` are the UTF-8 strings
    (the protocol's string form), at most ``batch_size`` per request; outputs, rate limit, retries,
    errors and accounting (``queries`` = texts answered) are those of :class:`RemoteClassifier`.
    Every text attack is black-box, so each one runs against it unchanged.
    """

    INPUT_TYPES = ("BYTES",)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:  # type: ignore[override]
        from bastion.text.model import check_texts

        items = check_texts(texts, doing=f"querying {self.endpoint.spec}")
        outs = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            name = self.input_name or "text"
            outs.append(self._post({"name": name, "shape": [len(chunk)], "datatype": "BYTES", "data": chunk},
                                   len(chunk)))  # fmt: skip
            self.queries += len(chunk)
        self.calls += 1
        out = torch.cat(outs) if outs else torch.zeros(0, self._num_classes or 0)
        return out.clamp_min(_FLOOR).log() if self.outputs == "probabilities" else out

    def __repr__(self) -> str:
        k, n = self._num_classes, self.queries
        return f"RemoteTextClassifier({self.endpoint.spec}, num_classes={k}, queries={n})"


def _error_text(response: Any) -> str:
    try:
        said = response.json().get("error", "")
    except (ValueError, AttributeError):
        said = response.text
    return _one_line(str(said), 160)


def _retry_after(response: Any) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _client_error_fix(status: int, model: RemoteClassifier, body: dict[str, Any] | None) -> str:
    ep = model.endpoint
    if status == 404:
        version = f" version {ep.version!r}" if ep.version else ""
        return f"check the model name {ep.name!r}{version} in the spec (GET {ep.model_url} must answer)"
    if status == 401:
        return (
            f"the server wants credentials: set {TOKEN_ENV} to an API key (bastion serve: bastion keys "
            "create) or pass headers={'Authorization': 'Bearer ...'}"
        )
    if status == 403:
        return f"the key in use may not query {ep.name!r} (revoked, or the model is outside its scope)"
    if body is not None:
        sent = body["inputs"][0]
        return (
            f"check the input against GET {ep.model_url} (sent name {sent['name']!r}, "
            f"shape {sent['shape']}, {sent['datatype']}): set input_name= or reshape the inputs"
        )
    return "check the spec and the server's documentation"


def load_remote_text(spec: str, **options: Any) -> RemoteTextClassifier:
    """A :class:`RemoteTextClassifier` from ``oip:http://host:port/models/NAME[?option=value&...]``;
    options, the API key and refusals as for :func:`load_remote`."""
    return cast(RemoteTextClassifier, load_remote(spec, _cls=RemoteTextClassifier, **options))


def load_remote(spec: str, **options: Any) -> RemoteClassifier:
    """A :class:`RemoteClassifier` from ``oip:http://host:port/models/NAME[?option=value&...]``.

    Keyword ``options`` (those of :class:`RemoteClassifier`) override the spec's query options; options
    passed as None are ignored (so a caller's defaults do not mask the spec; lift the rate cap with
    ``max_rps=math.inf`` or ``?max_rps=none``). ``weights``, ``mean`` and ``std`` are refused: a remote
    model has its own weights and preprocessing. An API key (e.g. for a ``bastion serve`` gateway) is read
    from the ``BASTION_API_KEY`` environment variable and sent as ``Authorization: Bearer KEY`` unless
    ``headers`` are given.
    """
    for local in ("weights", "mean", "std"):
        if options.pop(local, None) is not None:
            raise RemoteModelError(
                f"{spec}: {local} cannot be applied to a remote model (the server owns its weights and "
                f"preprocessing); drop --{local}"
            )
    cls: type[RemoteClassifier] = options.pop("_cls", RemoteClassifier)
    endpoint, from_spec = parse_oip_spec(spec)
    merged = {**from_spec, **{k: v for k, v in options.items() if v is not None}}
    token = os.environ.get(TOKEN_ENV)
    if token and "headers" not in merged:  # a key never rides in the spec: URLs end up in logs
        merged["headers"] = {"Authorization": f"Bearer {token.strip()}"}
    return cls(endpoint, **merged)
