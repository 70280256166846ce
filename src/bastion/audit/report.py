"""The audit report: one typed object, serialised to a versioned JSON schema (``schema_version``).

``docs/audit.md`` documents every key; ``schema.json`` (next to this file) is the JSON Schema that
``report.json`` validates against. Bump ``SCHEMA_VERSION``'s minor for additions, major for changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["SCHEMA_VERSION", "AuditReport", "Example", "RecoveredTrigger"]

SCHEMA_VERSION = "1.2"


@dataclass(frozen=True)
class Example:
    """One input the audit fooled, for the report's image grid (tensors on the CPU)."""

    index: int
    label: int
    clean_confidence: float
    adversarial_label: int
    adversarial_confidence: float
    x: torch.Tensor
    x_adv: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "clean_confidence": self.clean_confidence,
            "adversarial_label": self.adversarial_label,
            "adversarial_confidence": self.adversarial_confidence,
            "linf": float((self.x_adv - self.x).abs().max()),
            "l2": float((self.x_adv - self.x).flatten().norm()),
        }


@dataclass(frozen=True)
class RecoveredTrigger:
    """The trigger Neural Cleanse reverse-engineered for a class it flagged, for the report's figure:
    ``mask`` (1, H, W) in [0, 1] and ``pattern`` (C, H, W) inside ``bounds``, on the CPU."""

    label: int
    name: str
    mask: torch.Tensor
    pattern: torch.Tensor
    bounds: tuple[float, float]
    mask_l1: float
    anomaly_index: float


@dataclass(frozen=True)
class AuditReport:
    """Everything an audit found. ``to_dict()`` is what ``report.json`` holds."""

    schema_version: str
    model: dict[str, Any]
    data: dict[str, Any]
    config: dict[str, Any]
    clean: dict[str, Any]
    prechecks: dict[str, Any]
    threats: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    verdict: dict[str, Any]
    timing: dict[str, Any]
    environment: dict[str, Any]
    examples: list[Example] = field(default_factory=list)
    certification: dict[str, Any] | None = None
    """Certified robustness (``certify`` in the config): method, parameters, one row per threat."""
    training_threats: dict[str, Any] | None = None
    """Training-time threats (``scan_model``, ``scan_data``, ``training_manifest``): one sub-block each."""
    triggers: list[RecoveredTrigger] = field(default_factory=list)
    """The triggers behind ``BA401`` (drawn in report.html; not in report.json)."""
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool:
        return bool(self.verdict["passed"])

    @property
    def robust_accuracy(self) -> float | None:
        """The lowest adaptive robust accuracy over the audited threats (None if none ran)."""
        values = [t["robust_accuracy"] for t in self.threats]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created": self.created,
            "verdict": self.verdict,
            "findings": self.findings,
            "model": self.model,
            "data": self.data,
            "config": self.config,
            "clean": self.clean,
            "prechecks": self.prechecks,
            "threats": self.threats,
            "curves": self.curves,
            "checks": self.checks,
            "examples": [e.to_dict() for e in self.examples],
            "certification": self.certification,
            "training_threats": self.training_threats,
            "timing": self.timing,
            "environment": self.environment,
        }
