"""The gateway's Prometheus instruments, in a registry of the app's own (several apps in one process do
not collide).

Under several workers (``bastion serve --workers N``) every worker counts in its own process; the CLI then
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, prometheus-client keeps the values in files
there, and :meth:`Metrics.exposition` adds up every worker's (whichever worker the scrape reaches).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MULTIPROC_ENV", "Metrics"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Metrics:
    """Every instrument the gateway, its drift monitor and its alerts count in."""

    def __init__(self) -> None:
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
        self.key_requests = Counter(
            "bastion_gateway_key_requests", "Model requests by key id", ["key_id"], registry=r
        )
        self.latency = Histogram(
            "bastion_gateway_request_seconds",
            "Time to answer a model request",
            ["endpoint"],
            registry=r,
            buckets=LATENCY_BUCKETS,
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
        self.confidence = Histogram(
            "bastion_gateway_confidence",
            "The model's top-class probability per answered row (before the output policy); "
            "mean = _sum / _count",
            ["model"],
            registry=r,
            buckets=CONFIDENCE_BUCKETS,
        )
        self.drift_statistic = Gauge(
            "bastion_gateway_drift_statistic",
            "Largest KS statistic of the last drift window (inputs and confidence vs the reference)",
            ["model"],
            registry=r,
            multiprocess_mode="max",
        )
        self.drift_alarm = Gauge(
            "bastion_gateway_drift_alarm",
            "1 when the last drift window rejected 'same distribution as the reference'",
            ["model"],
            registry=r,
            multiprocess_mode="max",
        )
        self.drift_windows = Counter(
            "bastion_gateway_drift_windows",
            "Drift windows tested, by verdict",
            ["model", "verdict"],
            registry=r,
        )
        self.alerts = Counter("bastion_gateway_alerts", "Alerts raised, by kind", ["kind"], registry=r)

    def exposition(self) -> bytes:
        """The Prometheus text of this app (of every worker's, under several workers)."""
        from prometheus_client import generate_latest

        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)
        return generate_latest(merged)
