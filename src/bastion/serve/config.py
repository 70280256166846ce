"""The gateway's configuration: one frozen value, read from TOML whose keys are the CLI flag names.

```toml
host = "127.0.0.1"           # --host
port = 8000                  # --port
db = "sqlite:///bastion-gateway.db"   # --db: key store and audit log (or postgresql+psycopg://...)
limits = "memory"            # --limits: or redis://host:6379/0 (several workers share the buckets)
max_batch = 64               # rows per request
max_body_bytes = 8000000     # request bodies above this are refused before they are parsed
detectors = ["prada", "stateful"]   # and "ood" (needs reference): natural-pool extraction
on_detection = "log"         # log | alert | throttle | block
workers = 1                  # --workers: uvicorn worker processes (> 1 needs limits = "redis://...")
limits_prefix = "bastion:"   # Redis key prefix (gateways sharing one Redis keep apart by prefix)
reference = "digits"         # --reference: dataset spec of in-distribution inputs; enables drift detection
drift_window = 200           # input rows per drift test
drift_hours = 24.0           # expected run time over which...
drift_false_alarm = 0.01     # ...the chance of any false drift alarm is at most this
drift_rate = 10.0            # expected input rows per second (default: global_rate, else 10)
alert_webhook = "https://hooks.example/bastion"   # --alert-webhook: alerts POSTed as JSON (also logged)
dashboard = "local"          # /dashboard: local (loopback clients) | admin (admin_keys, Basic auth) | off
admin_keys = ["3f2a..."]     # key ids that may open /dashboard when dashboard = "admin"
transforms = ["bits:5"]      # --transform: input transforms before the model (bits, jpeg, median, resize-pad)
input_detectors = ["feature-squeezing:bits:2"]   # --input-detector: feature-squeezing[:T1+T2], strip[:N]
input_detector_fpr = 0.01    # --input-detector-fpr: share of clean reference rows each detector flags

[models]                     # served name -> bastion model spec
digits = "zoo:digits-cnn"
upstream = "oip:http://10.0.0.5:8080/models/digits"

[input_shapes]               # per-row input shape, for models that cannot tell it (FILE.py:factory...)
mine = [1, 28, 28]
```

:func:`load_config` refuses unknown keys and wrong types (one line each); :func:`check_config` lists the
remaining problems (bad ports, TLS half-configured, a model spec that cannot load...) without raising, so
``bastion serve --check-config`` can show them all at once.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bastion.errors import GatewayError

__all__ = ["DASHBOARD", "DEFAULT_DB", "ON_DETECTION", "GatewayConfig", "check_config", "load_config"]

DEFAULT_DB = "sqlite:///bastion-gateway.db"  # the same default as bastion.serve.db.DEFAULT_DB
ON_DETECTION = ("log", "alert", "throttle", "block")
DASHBOARD = ("local", "admin", "off")
DEFAULT_DRIFT_RATE = 10.0  # expected input rows per second when neither drift_rate nor global_rate is set
_MODEL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``bastion serve`` needs besides the models themselves. TOML keys = CLI flags, '-' -> '_'."""

    models: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    db: str = DEFAULT_DB
    limits: str = "memory"
    global_rate: float | None = None
    global_burst: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_batch: int = 64
    max_body_bytes: int = 8_000_000
    detectors: tuple[str, ...] = ("prada", "stateful")
    on_detection: str = "log"
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Per-row input shape of a served model, when the model cannot tell it (zoo and ``oip:`` models can)."""
    workers: int = 1
    limits_prefix: str = "bastion:"
    reference: str | None = None
    drift_window: int = 200
    drift_hours: float = 24.0
    drift_false_alarm: float = 0.01
    drift_rate: float | None = None
    alert_webhook: str | None = None
    dashboard: str = "local"
    admin_keys: tuple[str, ...] = ()
    transforms: tuple[str, ...] = ()
    """Input transforms (``parse_defense`` specs) before the model (:mod:`bastion.serve.inline`)."""
    input_detectors: tuple[str, ...] = ()
    """Adversarial-input detectors, calibrated on ``reference`` at ``input_detector_fpr``."""
    input_detector_fpr: float = 0.01

    @property
    def expected_rows_per_second(self) -> float:
        """The traffic the drift false-alarm budget is spread over: drift_rate, else global_rate, else 10."""
        return self.drift_rate or self.global_rate or DEFAULT_DRIFT_RATE

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values (tuples as lists) that :func:`config_from_dict` reads back."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)
        } | {"input_shapes": {k: list(v) for k, v in self.input_shapes.items()}}

    def with_overrides(self, **values: Any) -> GatewayConfig:
        """A copy with the values that are not None replaced (CLI flags over the file)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


# key -> (accepted python types, what to write); None is accepted where the default is None
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "models": ((dict,), "a table of NAME = 'model spec'"),
    "host": ((str,), "a host name or address string"),
    "port": ((int,), "a whole number"),
    "db": ((str,), "a database URL string"),
    "limits": ((str,), "'memory' or a redis:// URL"),
    "global_rate": ((int, float), "a number of requests per second"),
    "global_burst": ((int,), "a whole number of requests"),
    "tls_cert": ((str,), "a file path"),
    "tls_key": ((str,), "a file path"),
    "max_batch": ((int,), "a whole number of rows"),
    "max_body_bytes": ((int,), "a whole number of bytes"),
    "detectors": ((list, tuple), "a list of detector names"),
    "on_detection": ((str,), f"one of {', '.join(ON_DETECTION)}"),
    "input_shapes": ((dict,), "a table of NAME = [C, H, W]"),
    "workers": ((int,), "a whole number of worker processes"),
    "limits_prefix": ((str,), "a Redis key prefix string such as 'bastion:'"),
    "reference": ((str,), "a dataset spec such as 'digits' or 'npz:ref.npz'"),
    "drift_window": ((int,), "a whole number of input rows"),
    "drift_hours": ((int, float), "a number of hours"),
    "drift_false_alarm": ((int, float), "a probability such as 0.01"),
    "drift_rate": ((int, float), "a number of input rows per second"),
    "alert_webhook": ((str,), "an http(s):// URL"),
    "dashboard": ((str,), f"one of {', '.join(DASHBOARD)}"),
    "admin_keys": ((list, tuple), "a list of key ids"),
    "transforms": ((list, tuple), "a list of transform specs such as ['bits:5', 'jpeg:75']"),
    "input_detectors": ((list, tuple), "a list of detector specs such as ['feature-squeezing']"),
    "input_detector_fpr": ((int, float), "a false-positive rate such as 0.01"),
}
_OPTIONAL = {"global_rate", "global_burst", "tls_cert", "tls_key", "reference", "drift_rate", "alert_webhook"}
_FLOATS = {"global_rate", "drift_hours", "drift_false_alarm", "drift_rate", "input_detector_fpr"}
_LISTS = ("detectors", "admin_keys", "transforms", "input_detectors")


def _typed(key: str, value: Any, source: str) -> Any:
    types, what = _TYPES[key]
    if isinstance(value, bool) or not isinstance(value, types):
        raise GatewayError(f"{source}: {key} = {value!r} is not valid; write {what}")
    return _converted(key, value, source)


def _converted(key: str, value: Any, source: str) -> Any:
    if key in _LISTS:
        if not all(isinstance(v, str) for v in value):
            example = _TYPES[key][1] if key in ("transforms", "input_detectors") else None
            raise GatewayError(
                f"{source}: {key} must be {example}"
                if example
                else f"{source}: {key} must be a list of names, e.g. ['prada', 'stateful']"
            )
        return tuple(value)
    if key == "models":
        bad = [n for n, spec in value.items() if not isinstance(spec, str)]
        if bad:
            raise GatewayError(
                f"{source}: models.{bad[0]} must be a model spec string, e.g. 'zoo:digits-cnn'"
            )
        return dict(value)
    if key == "input_shapes":
        shapes = {}
        for name, shape in value.items():
            if not isinstance(shape, list | tuple) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in shape
            ):
                raise GatewayError(f"{source}: input_shapes.{name} must be a list of sizes, e.g. [1, 28, 28]")
            shapes[name] = tuple(shape)
        return shapes
    if key in _FLOATS:
        return float(value)
    return value


def load_config(path: str | Path) -> GatewayConfig:
    """The :class:`GatewayConfig` in the TOML file ``path``; unknown keys and wrong types raise
    :class:`GatewayError`. Semantic checks are :func:`check_config`'s."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise GatewayError(f"config file {source} not found; check the path given to --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise GatewayError(f"{source} is not valid TOML ({exc}); fix the syntax") from None
    return config_from_dict(data, source)


def config_from_dict(data: dict[str, Any], source: str = "config") -> GatewayConfig:
    """The :class:`GatewayConfig` of TOML-like ``data`` (what :meth:`GatewayConfig.to_dict` gives), with
    the checks of :func:`load_config`; ``source`` names where it came from in the errors."""
    valid = {f.name for f in fields(GatewayConfig)}
    for key in data:
        if key not in valid:
            hint = f" (did you mean {key.replace('-', '_')!r}?)" if key.replace("-", "_") in valid else ""
            raise GatewayError(f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(valid))}")
    values: dict[str, Any] = {
        k: None if v is None and k in _OPTIONAL else _typed(k, v, source) for k, v in data.items()
    }
    return GatewayConfig(**values)


def _check_model(name: str, spec: str) -> str | None:
    if not name or not set(name) <= _MODEL_NAME_CHARS:
        return f"model name {name!r}: use letters, digits, '.', '_' and '-' only (it is part of the URL)"
    if spec.startswith("oip:"):
        from bastion.errors import RemoteModelError
        from bastion.remote import parse_oip_spec

        try:
            parse_oip_spec(spec)
        except RemoteModelError as exc:
            return f"models.{name}: {exc}"
        return None
    if spec.startswith("zoo:"):
        from bastion.zoo import available

        if spec[4:] not in available():
            return f"models.{name}: unknown zoo model {spec[4:]!r}; valid names: {', '.join(available())}"
        return None
    target = spec.rsplit(":", 1)[0] if ":" in spec else spec
    if (target.endswith(".py") or ":" not in spec) and not Path(target).is_file():
        return f"models.{name}: file {target} not found; check the path (relative to where you run serve)"
    return None


def check_config(cfg: GatewayConfig) -> list[str]:
    """Problems in ``cfg``, one line each naming the key and the fix; empty when it can be served."""
    problems: list[str] = []
    if not cfg.models:
        problems.append("no models to serve; give MODEL on the command line or a [models] table")
    for name, spec in cfg.models.items():
        if (problem := _check_model(name, spec)) is not None:
            problems.append(problem)
    for name, shape in cfg.input_shapes.items():
        if name not in cfg.models:
            problems.append(f"input_shapes.{name}: no such model in [models]; remove it or fix the name")
        if not shape or any(d < 1 for d in shape):
            problems.append(f"input_shapes.{name} = {list(shape)}: sizes must be >= 1, e.g. [1, 28, 28]")
    if not cfg.host:
        problems.append("host is empty; use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
    if not 1 <= cfg.port <= 65535:
        problems.append(f"port = {cfg.port} is outside 1..65535; pick a free port such as 8000")
    if not cfg.db:
        problems.append("db is empty; use sqlite:///FILE.db or postgresql+psycopg://USER@HOST/DB")
    if cfg.limits != "memory" and not cfg.limits.startswith(("redis://", "rediss://", "unix://")):
        problems.append(f"limits = {cfg.limits!r}: use 'memory' or a redis://HOST:PORT/DB URL")
    if cfg.global_rate is not None and not (math.isfinite(cfg.global_rate) and cfg.global_rate > 0):
        problems.append(f"global_rate = {cfg.global_rate}: use a number of requests per second > 0")
    if cfg.global_burst is not None and cfg.global_burst < 1:
        problems.append(f"global_burst = {cfg.global_burst}: use a whole number >= 1")
    if (cfg.global_rate is None) != (cfg.global_burst is None):
        problems.append("global_rate and global_burst go together; set both or neither")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        problems.append("tls_cert and tls_key go together; set both (PEM files) or neither")
    for key in ("tls_cert", "tls_key"):
        path = getattr(cfg, key)
        if path is not None and not Path(path).is_file():
            problems.append(f"{key} = {path}: file not found; give the PEM file's path")
    if cfg.max_batch < 1:
        problems.append(f"max_batch = {cfg.max_batch}: use a whole number of rows >= 1")
    if cfg.max_body_bytes < 1024:
        problems.append(f"max_body_bytes = {cfg.max_body_bytes}: use at least 1024 bytes")
    if cfg.on_detection not in ON_DETECTION:
        problems.append(f"on_detection = {cfg.on_detection!r}: use one of {', '.join(ON_DETECTION)}")
    if len(set(cfg.detectors)) != len(cfg.detectors):
        problems.append(f"detectors = {list(cfg.detectors)} names one twice; list each once")
    from bastion.serve.inline import inline_problems

    return problems + _check_workers(cfg) + _check_monitoring(cfg) + inline_problems(cfg)


def _check_workers(cfg: GatewayConfig) -> list[str]:
    if cfg.workers < 1:
        return [f"workers = {cfg.workers}: use a whole number of processes >= 1"]
    if cfg.workers > 1 and cfg.limits == "memory":
        return [
            f"workers = {cfg.workers} with limits = 'memory' would give every key {cfg.workers}x its rate "
            "(one bucket per worker); use limits = 'redis://127.0.0.1:6379/0' or workers = 1"
        ]
    return []


def _check_monitoring(cfg: GatewayConfig) -> list[str]:
    problems = []
    if cfg.drift_window < 20:
        problems.append(f"drift_window = {cfg.drift_window}: use at least 20 rows per drift test")
    if not (math.isfinite(cfg.drift_hours) and cfg.drift_hours > 0):
        problems.append(f"drift_hours = {cfg.drift_hours}: use the expected run time in hours, > 0")
    if not 0.0 < cfg.drift_false_alarm < 1.0:
        problems.append(
            f"drift_false_alarm = {cfg.drift_false_alarm}: use a probability in (0, 1), e.g. 0.01"
        )
    if cfg.drift_rate is not None and not (math.isfinite(cfg.drift_rate) and cfg.drift_rate > 0):
        problems.append(f"drift_rate = {cfg.drift_rate}: use the expected input rows per second, > 0")
    if cfg.alert_webhook is not None and not cfg.alert_webhook.startswith(("http://", "https://")):
        problems.append("alert_webhook: use an http:// or https:// URL")
    if cfg.dashboard not in DASHBOARD:
        problems.append(f"dashboard = {cfg.dashboard!r}: use one of {', '.join(DASHBOARD)}")
    if cfg.dashboard == "admin" and not cfg.admin_keys:
        problems.append("dashboard = 'admin' but admin_keys is empty; list the key ids that may open it")
    return problems
