"""``bastion serve``: the secure serving gateway (FastAPI under uvicorn) in front of a model."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.app import app
from bastion.cli.common import MODEL_HELP, err, friendly_errors, out
from bastion.errors import GatewayError

if TYPE_CHECKING:
    from bastion.model import Classifier
    from bastion.serve.config import GatewayConfig


def served_name(spec: str) -> str:
    """The URL name of a model spec: ``zoo:digits-cnn`` -> ``digits-cnn``, ``oip:.../models/x`` -> ``x``,
    ``net.py:build`` -> ``net``."""
    if spec.startswith("zoo:"):
        name = spec[4:]
    elif spec.startswith("oip:"):
        from bastion.remote import parse_oip_spec

        name = parse_oip_spec(spec)[0].name
    else:
        name = Path(spec.split(":")[0]).stem or "model"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def load_served_model(spec: str) -> Classifier:
    """The classifier behind a served name (see :func:`bastion.serve.factory.load_served_model`)."""
    from bastion.serve.factory import load_served_model as load

    return load(spec)


def build_detectors(names: tuple[str, ...], cfg: Any = None, models: Any = None) -> list[Any]:
    """Fresh detectors by name, calibrated on the config's reference (:func:`bastion.serve.factory.
    build_detectors`)."""
    from bastion.serve.factory import build_detectors as build

    return build(names, cfg, models)


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise GatewayError(f"--input-shape takes sizes separated by commas (e.g. 1,28,28), got {text!r}")
    return shape


def _split_items(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeated and comma-separated option values as one tuple; None when the option was not given."""
    if not values:
        return None
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _first_key(cfg: GatewayConfig, served: Mapping[str, Any]) -> None:
    """On a first run (an empty key store), create one key and print it once with a ready curl line."""
    from bastion.serve.keys import KeyStore, Scope

    store = KeyStore(cfg.db)
    try:
        if store.list():
            return
        key, token = store.create("first-key", Scope())
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    name, first = next(iter(served.items()))
    scheme = "https" if cfg.tls_cert else "http"
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
    base = f"{scheme}://{host}:{cfg.port}"
    out.print(f"[bold]Created API key {key.key_id}[/] (scope: {json.dumps(key.scope.to_dict())}).")
    out.print("[yellow]The token is shown once and not stored; keep it now:[/]")
    out.print(token, highlight=False, soft_wrap=True)
    shape = first.spec.row_shape
    if math.prod(shape) <= 64:  # a whole request fits on one line
        zeros: Any = first.spec.bounds[0]
        for d in reversed(shape):
            zeros = [zeros] * d
        body = json.dumps({"model": name, "inputs": [zeros]}, separators=(",", ":"))
        line = (
            f"curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
            f"-d '{body}' {base}/v1/predict"
        )
    else:
        line = f"curl -s -H 'Authorization: Bearer {token}' {base}/v2/models/{name}"
    out.print("Try it:", highlight=False)
    out.print(line, highlight=False, soft_wrap=True)
    out.print(
        "Next: more keys with scopes (bastion keys create NAME --models ... --output labels|top3|probs), "
        "a gateway.toml (bastion serve --config gateway.toml; every flag is a key), "
        "TLS (--tls-cert/--tls-key), "
        "PostgreSQL (--db) and Redis (--limits) for several workers: see docs/serve.md.",
        highlight=False,
    )


@app.command()
@friendly_errors
def serve(
    model: Annotated[
        str | None, typer.Argument(help=MODEL_HELP + " Or 'oip:URL' to proxy an upstream.")
    ] = None,
    config_path: Annotated[
        Path | None, typer.Option("--config", help="Gateway config (TOML; keys are these flags' names).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="URL name of MODEL (default: from the spec).")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default 127.0.0.1: this machine only)."),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8000).")] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="BASTION_DB",
            help="Key store and audit log: sqlite:///FILE.db or postgresql+psycopg://... (env BASTION_DB).",
        ),
    ] = None,
    limits: Annotated[
        str | None, typer.Option("--limits", help="Rate-limit state: 'memory' or redis://HOST:PORT/DB.")
    ] = None,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    input_shape: Annotated[
        str | None,
        typer.Option(
            "--input-shape", help="Per-row input shape of MODEL (e.g. 1,28,28) when it cannot tell it."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", help="uvicorn worker processes (default 1; more need --limits redis://...)."
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference", help="Dataset spec of in-distribution inputs (e.g. digits): drift alerts."
        ),
    ] = None,
    alert_webhook: Annotated[
        str | None, typer.Option("--alert-webhook", help="URL that alerts are POSTed to as JSON.")
    ] = None,
    transform: Annotated[
        list[str] | None,
        typer.Option(
            "--transform",
            help="Input transform before the model (bits:5, jpeg:75, median:2...); repeat or use commas.",
        ),
    ] = None,
    input_detector: Annotated[
        list[str] | None,
        typer.Option(
            "--input-detector",
            help="Adversarial-input detector (feature-squeezing[:bits:2], strip); needs --reference. "
            "Repeat or use commas.",
        ),
    ] = None,
    input_detector_fpr: Annotated[
        float | None,
        typer.Option(
            "--input-detector-fpr", help="Share of clean reference rows each input detector flags (0.01)."
        ),
    ] = None,
    check_config: Annotated[
        bool, typer.Option("--check-config", help="Validate the config (and load the models), then exit.")
    ] = False,
) -> None:
    """Serve MODEL (or the models table of --config) behind API keys, rate limits, input validation, output
    policies, a hash-chained audit log and attack detectors.

    A first run creates one API key when the key store is empty and prints it once, with a curl line to try.
    """
    from bastion.serve.config import GatewayConfig, load_config
    from bastion.serve.config import check_config as problems_of

    cfg = load_config(config_path) if config_path is not None else GatewayConfig()
    cfg = cfg.with_overrides(
        host=host,
        port=port,
        db=db,
        limits=limits,
        tls_cert=tls_cert,
        tls_key=tls_key,
        workers=workers,
        reference=reference,
        alert_webhook=alert_webhook,
        transforms=_split_items(transform),
        input_detectors=_split_items(input_detector),
        input_detector_fpr=input_detector_fpr,
    )
    if model is not None:
        served = name or served_name(model)
        shapes = dict(cfg.input_shapes)
        if (shape := _parse_shape(input_shape)) is not None:
            shapes[served] = shape
        cfg = cfg.with_overrides(models={**cfg.models, served: model}, input_shapes=shapes)
    problems = problems_of(cfg)
    if problems:
        for problem in problems:
            err.print(f"[bold red]config:[/] {problem}", highlight=False)
        raise typer.Exit(1)
    models = {n: load_served_model(spec) for n, spec in cfg.models.items()}
    if check_config:  # everything create_app would refuse, without touching the key store or the log
        from bastion.serve.app import input_shape_of

        shapes = {n: input_shape_of(n, m, cfg.input_shapes) for n, m in models.items()}
        build_detectors(cfg.detectors, cfg, models)
        listed = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
        drift = _check_drift(cfg, models) if cfg.reference else None
        out.print(f"config OK: serves {listed} on {cfg.host}:{cfg.port}", highlight=False)
        if drift:
            out.print(drift, highlight=False)
        if cfg.transforms or cfg.input_detectors:
            out.print(_check_inline(cfg, models), highlight=False)
        return
    if cfg.workers > 1:
        _serve_workers(cfg, models)
        return
    from bastion.serve.factory import build_app

    application = build_app(cfg, models)
    _first_key(cfg, application.state.gateway.served)
    _warn_clear_text(cfg)
    import uvicorn

    uvicorn.run(
        application,
        host=cfg.host,
        port=cfg.port,
        ssl_certfile=cfg.tls_cert,
        ssl_keyfile=cfg.tls_key,
        log_level="info",
    )


def _check_drift(cfg: GatewayConfig, models: dict[str, Classifier]) -> str:
    """Build the drift monitors once (the reference must load and fit a model) and say what they test."""
    from bastion.serve.monitoring import drift_monitors
    from bastion.serve.served import serve_model

    served = {n: serve_model(n, m, cfg.input_shapes, cfg.max_batch) for n, m in models.items()}
    monitors = drift_monitors(cfg, served, None, None)
    alpha = next(iter(monitors.values())).alpha
    return (
        f"drift: {', '.join(monitors)} against {cfg.reference!r}, windows of {cfg.drift_window} rows at "
        f"alpha {alpha:.2g} each (at most {cfg.drift_false_alarm:g} chance of a false alarm over "
        f"{cfg.drift_hours:g} h at {cfg.expected_rows_per_second:g} rows/s)"
    )


def _check_inline(cfg: GatewayConfig, models: dict[str, Classifier]) -> str:
    """Build the in-line defenses once (transforms checked, detectors calibrated) and say what they do."""
    from bastion.serve.inline import inline_defenses
    from bastion.serve.served import serve_model

    served = {n: serve_model(n, m, cfg.input_shapes, cfg.max_batch) for n, m in models.items()}
    defenses = inline_defenses(cfg, served)
    parts = [f"transforms {', '.join(t.spec() for t in defenses.transforms)}"] if defenses.transforms else []
    for name, detectors in defenses.detectors.items():
        listed = ", ".join(f"{d.name} (threshold {d.threshold:.4g})" for d in detectors)
        parts.append(f"{name}: {listed} at fpr {cfg.input_detector_fpr:g}")
    return "in-line defenses: " + "; ".join(parts)


def _warn_clear_text(cfg: GatewayConfig) -> None:
    if not _is_loopback(cfg.host) and cfg.tls_cert is None:
        err.print(
            f"[yellow]warning:[/] serving on {cfg.host} without TLS: keys cross the network in clear; "
            "pass --tls-cert/--tls-key or put a TLS proxy in front",
            highlight=False,
        )


def _serve_workers(cfg: GatewayConfig, models: dict[str, Classifier]) -> None:
    """Several uvicorn workers, each building the gateway from the config in the environment; metrics
    kept in files so that /metrics adds up every worker's."""
    import os
    import tempfile

    import uvicorn

    from bastion.serve.factory import CONFIG_ENV, config_to_env
    from bastion.serve.metrics import MULTIPROC_ENV
    from bastion.serve.served import serve_model

    served = {n: serve_model(n, m, cfg.input_shapes, cfg.max_batch) for n, m in models.items()}
    _first_key(cfg, served)
    _warn_clear_text(cfg)
    os.environ[CONFIG_ENV] = config_to_env(cfg)
    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.TemporaryDirectory(prefix="bastion-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir.name
    try:
        uvicorn.run(
            "bastion.serve.factory:app_from_env",
            factory=True,
            workers=cfg.workers,
            host=cfg.host,
            port=cfg.port,
            ssl_certfile=cfg.tls_cert,
            ssl_keyfile=cfg.tls_key,
            log_level="info",
        )
    finally:
        if metrics_dir is not None:
            metrics_dir.cleanup()
