"""Monitoring wired from the config: the alerter (log + ``alert_webhook``) and one drift monitor per
served model whose rows have the shape of the ``reference`` data set's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from bastion.errors import GatewayError
from bastion.serve.alerts import Alerter
from bastion.serve.drift import DriftMonitor, window_alpha

if TYPE_CHECKING:
    from bastion.serve.config import GatewayConfig
    from bastion.serve.metrics import Metrics
    from bastion.serve.pipeline import Gateway
    from bastion.serve.served import Served

__all__ = ["attach_monitoring", "drift_monitors"]

MAX_REFERENCE = 5000  # reference rows kept (a seeded subset); KS and the start-up forward pass scale with it


def attach_monitoring(
    gw: Gateway, drift: Mapping[str, DriftMonitor] | None = None, alerter: Alerter | None = None
) -> None:
    """Give ``gw`` its alerter and drift monitors: the ones passed, else those the config names."""
    gw.alerter = alerter or Alerter(gw.config.alert_webhook, metrics=gw.metrics)
    if gw.alerter.metrics is None:
        gw.alerter.metrics = gw.metrics
    if drift is None:
        drift = drift_monitors(gw.config, gw.served, gw.metrics, gw.alerter) if gw.config.reference else {}
    unknown = [name for name in drift if name not in gw.served]
    if unknown:
        raise GatewayError(
            f"drift monitor for {unknown[0]!r}: no such served model; use one of {sorted(gw.served)}"
        )
    for monitor in drift.values():
        monitor.metrics = monitor.metrics or gw.metrics
        monitor.alerter = monitor.alerter or gw.alerter
    gw.drift = dict(drift)


def _confidences(served: Served, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [served.model(x[i : i + batch]).float().softmax(1).amax(1) for i in range(0, len(x), batch)]
        )


def drift_monitors(
    cfg: GatewayConfig, served: Mapping[str, Served], metrics: Metrics | None, alerter: Alerter | None
) -> dict[str, DriftMonitor]:
    """A monitor per served model that takes rows of the reference's shape, each at the per-window level
    :func:`~bastion.serve.drift.window_alpha` gives for the config's expected run time."""
    from bastion.data import load_dataset

    assert cfg.reference is not None
    reference = load_dataset(cfg.reference, split="train")
    g = torch.Generator().manual_seed(0)
    x = reference.x[torch.randperm(len(reference), generator=g)[:MAX_REFERENCE]]
    row = tuple(x.shape[1:])
    matching = {name: s for name, s in served.items() if tuple(s.spec.row_shape) == row}
    if not matching:
        shapes = ", ".join(f"{n} {list(s.spec.row_shape)}" for n, s in served.items())
        raise GatewayError(
            f"reference {cfg.reference!r} has rows of shape {list(row)} but the served models take {shapes}; "
            "give a reference data set of the models' inputs"
        )
    alpha = window_alpha(
        cfg.drift_false_alarm, cfg.drift_hours, cfg.expected_rows_per_second, cfg.drift_window
    )
    return {
        name: DriftMonitor(
            x,
            _confidences(s, x),
            alpha=alpha,
            window=cfg.drift_window,
            name=name,
            metrics=metrics,
            alerter=alerter,
        )
        for name, s in matching.items()
    }
