"""The audit report: one typed object, serialised to a versioned JSON schema (``schema_version``).

``docs/audit.md`` documents every key; ``schema.json`` (next to this file) is the JSON Schema that
``report.json`` validates against. Bump ``SCHEMA_VERSION``'s minor for additions, major for changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["SCHEMA_VERSION", "AuditReport", "Example", "RecoveredTrigger", "headline_rows"]

SCHEMA_VERSION = "1.6"


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
    """Everything an audit found. ``to_dict()`` is what ``report.json`` holds.

    ``sections`` holds each section's block by its report key, in run order (``pipeline``); the
    properties below read the built-in ones. ``artifacts`` holds what only the HTML draws, per section.
    """

    schema_version: str
    model: dict[str, Any]
    data: dict[str, Any]
    config: dict[str, Any]
    clean: dict[str, Any]
    checks: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    verdict: dict[str, Any]
    timing: dict[str, Any]
    environment: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipeline: list[str] = field(default_factory=list)
    section_objects: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    """The sections that ran (objects, in order), for rendering their HTML partials; not serialised."""
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool:
        return bool(self.verdict["passed"])

    @property
    def prechecks(self) -> dict[str, Any]:
        return dict(self.sections.get("prechecks") or {})

    @property
    def threats(self) -> list[dict[str, Any]]:
        """The evasion section's rows, one per threat (with the detector's row, as in schema 1.2)."""
        return _with_detector(self.sections.get("threats") or [], self.sections.get("detector"))

    @property
    def curves(self) -> list[dict[str, Any]]:
        return list(self.sections.get("curves") or [])

    @property
    def certification(self) -> dict[str, Any] | None:
        """Certified robustness (``certify`` in the config): method, parameters, one row per threat."""
        value: dict[str, Any] | None = self.sections.get("certification")
        return value

    @property
    def training_threats(self) -> dict[str, Any] | None:
        """Training-time threats (``scan_model``, ``scan_data``, ``training_manifest``), one sub-block
        each."""
        value: dict[str, Any] | None = self.sections.get("training_threats")
        return value

    @property
    def examples(self) -> list[Example]:
        """Inputs the first threat's attacks fooled, for the image grid (the evasion section's)."""
        return list(self.artifacts.get("threats", {}).get("examples") or [])

    @property
    def triggers(self) -> list[RecoveredTrigger]:
        """The triggers behind ``BA401`` (drawn in report.html; not in report.json)."""
        return list(self.artifacts.get("training_threats", {}).get("triggers") or [])

    @property
    def robust_accuracy(self) -> float | None:
        """The lowest adaptive robust accuracy over the audited threats, image threats and the text and
        tabular sections' headline rows alike (None if none ran)."""
        values = [t["robust_accuracy"] for t in self.threats]
        values += [h["robust_accuracy"] for h in headline_rows(self.sections)]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        blocks = {**self.sections, "threats": self.threats}
        return {
            "schema_version": self.schema_version,
            "created": self.created,
            "verdict": self.verdict,
            "findings": self.findings,
            "model": self.model,
            "data": self.data,
            "config": self.config,
            "clean": self.clean,
            "sections": list(self.pipeline),
            **blocks,
            "checks": self.checks,
            "examples": [e.to_dict() for e in self.examples],
            "timing": self.timing,
            "environment": self.environment,
        }


def headline_rows(blocks: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The headline rows of the sections that measure robustness without an image threat model (text,
    tabular; schema 1.5): every section block that is an object with a ``headline`` list contributes its
    rows, each ``{"label", "clean_accuracy", "robust_accuracy", "note"}``, in section order. ``blocks`` is
    an :class:`AuditReport`'s ``sections`` or a report.json dict."""
    rows: list[dict[str, Any]] = []
    for block in blocks.values():
        if isinstance(block, Mapping) and isinstance(block.get("headline"), list):
            rows += [dict(r) for r in block["headline"]]
    return rows


def _with_detector(threats: list[dict[str, Any]], detector: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Schema 1.x kept the detector's row inside its threat's row: copy it there (by label)."""
    if not detector:
        return list(threats)
    rows = {r["label"]: {k: v for k, v in r.items() if k != "label"} for r in detector["threats"]}
    return [{**t, "detector": rows[t["label"]]} if t["label"] in rows else t for t in threats]
