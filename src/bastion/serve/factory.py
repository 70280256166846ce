"""Building a gateway from its config alone, so that every uvicorn worker builds the same one.

``bastion serve --workers N`` puts the resolved config (JSON) in ``BASTION_GATEWAY_CONFIG`` and starts
uvicorn with the factory ``bastion.serve.factory:app_from_env``; each worker process then loads the models
and opens the shared state: the key store and audit log in the database (SQLite in WAL mode, or
PostgreSQL), the rate limits in Redis (``limits = "redis://..."``, required for several workers: in-memory
buckets would give every key N times its rate). Per worker, not shared: the detectors' per-key state
(each sees the share of a key's queries its worker answered) and the drift windows (each tests its own
share of the traffic, at the level computed for the whole traffic, so the false-alarm bound still holds).
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

from bastion.errors import GatewayError
from bastion.serve.config import GatewayConfig, check_config, config_from_dict

if TYPE_CHECKING:
    from fastapi import FastAPI

    from bastion.model import Classifier
    from bastion.serve.limits import Limiter

__all__ = [
    "CONFIG_ENV",
    "DETECTOR_NAMES",
    "app_from_env",
    "build_app",
    "build_detectors",
    "load_served_model",
]

CONFIG_ENV = "BASTION_GATEWAY_CONFIG"
DETECTOR_NAMES = ("prada", "stateful")  # the detectors that need no calibration data ("ood" does)


def load_served_model(spec: str) -> Classifier:
    """The classifier behind a served name: a local model, or an ``oip:`` upstream the gateway proxies
    (without the client-side rate cap unless the spec sets ``max_rps``: the gateway limits its callers)."""
    if spec.startswith("oip:"):
        from bastion.remote import load_remote, parse_oip_spec

        options = parse_oip_spec(spec)[1]
        return load_remote(spec, **({} if "max_rps" in options else {"max_rps": math.inf}))
    from bastion.loading import load_model

    return load_model(spec)


def build_detectors(
    names: tuple[str, ...], cfg: GatewayConfig | None = None, models: dict[str, Classifier] | None = None
) -> list[Any]:
    """Fresh detectors by name. With a ``reference`` data set in ``cfg`` (and one served model, or
    several that take its rows) they are calibrated on it: ``ood`` needs that (its subspace and the
    model's confidence quantiles come from in-distribution rows), ``stateful`` takes its threshold from
    it instead of the default; PRADA needs no calibration."""
    from bastion.serve.detect import PRADA, OODRateDetector, StatefulDetector

    known = (*DETECTOR_NAMES, "ood")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise GatewayError(f"unknown detector {unknown[0]!r}; use some of {', '.join(known)}")
    reference = _reference_rows(cfg, models) if cfg is not None and cfg.reference and models else None
    if "ood" in names and reference is None:
        raise GatewayError(
            "the ood detector is calibrated on in-distribution inputs: set reference (e.g. reference = "
            "'digits', --reference digits) or drop ood from detectors"
        )
    built: list[Any] = []
    for name in names:
        if name == "prada":
            built.append(PRADA())
        elif name == "stateful":
            built.append(
                StatefulDetector() if reference is None else StatefulDetector().calibrate(reference[0])
            )
        else:
            assert reference is not None
            built.append(OODRateDetector().calibrate(*reference))
    return built


def _reference_rows(
    cfg: GatewayConfig, models: dict[str, Classifier], limit: int = 2000
) -> tuple[Any, Any] | None:
    """Up to ``limit`` seeded rows of the reference's training split and the first served model's
    probabilities on them (the attack detectors are shared by every served model: one input domain)."""
    import torch

    from bastion.data import load_dataset
    from bastion.model import predict

    assert cfg.reference is not None
    data = load_dataset(cfg.reference, split="train")
    x = data.x[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:limit]]
    model = next(iter(models.values()))
    return x, torch.softmax(predict(model, x), dim=1)


def limiter_of(cfg: GatewayConfig) -> Limiter:
    """The config's limiter; Redis under the config's key prefix."""
    from bastion.serve.limits import RedisLimiter, limiter_for

    if cfg.limits.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiter(cfg.limits, cfg.global_rate, cfg.global_burst, prefix=cfg.limits_prefix)
    return limiter_for(cfg.limits, cfg.global_rate, cfg.global_burst)


def build_app(cfg: GatewayConfig, models: dict[str, Classifier] | None = None) -> FastAPI:
    """The gateway ``cfg`` describes (its models loaded here unless given)."""
    from bastion.serve.app import create_app
    from bastion.serve.audit_log import AuditLog
    from bastion.serve.keys import KeyStore

    if models is None:
        models = {name: load_served_model(spec) for name, spec in cfg.models.items()}
    return create_app(
        cfg,
        models=models,
        keys=KeyStore(cfg.db),
        limiter=limiter_of(cfg),
        log=AuditLog(cfg.db),
        detectors=build_detectors(cfg.detectors, cfg, models),
    )


def config_to_env(cfg: GatewayConfig) -> str:
    """The value of ``BASTION_GATEWAY_CONFIG`` that makes :func:`app_from_env` build ``cfg``."""
    return json.dumps(cfg.to_dict())


def app_from_env() -> FastAPI:
    """uvicorn's factory (``bastion.serve.factory:app_from_env``): the gateway of the JSON config in
    ``BASTION_GATEWAY_CONFIG``."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise GatewayError(f"{CONFIG_ENV} is not set; start workers with bastion serve --workers N")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GatewayError(f"{CONFIG_ENV} is not valid JSON ({exc}); start with bastion serve") from None
    cfg = config_from_dict(data, CONFIG_ENV)
    problems = check_config(cfg)
    if problems:
        raise GatewayError(f"{CONFIG_ENV}: {problems[0]}")
    return build_app(cfg)
