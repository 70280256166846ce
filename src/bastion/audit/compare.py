"""What got better or worse between two audit reports (``report.json`` files)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.audit.config import ConfigError
from bastion.audit.report import SCHEMA_VERSION

__all__ = ["Comparison", "compare_reports", "read_report"]


def read_report(path: str | Path) -> dict[str, Any]:
    """Load a ``report.json``, refusing files that are not audit reports or have another major schema."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"report {p} does not exist; pass the report.json an audit wrote")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {p} is not JSON: {exc}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, str):
        raise ConfigError(f"{p} has no schema_version: it is not a bastion audit report")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ConfigError(f"{p} has schema {version}; this bastion reads {SCHEMA_VERSION.split('.')[0]}.x")
    return data


@dataclass(frozen=True)
class Comparison:
    """Rows of ``(what, old, new, delta)`` for metrics (higher is better) and the findings' changes."""

    metrics: list[tuple[str, float | None, float | None, float | None]]
    new_findings: list[dict[str, Any]] = field(default_factory=list)
    resolved_findings: list[dict[str, Any]] = field(default_factory=list)
    verdict: tuple[bool, bool] = (True, True)

    def regressed(self, tolerance: float = 0.0) -> bool:
        """A metric fell by more than ``tolerance``, a finding appeared, or the verdict turned to fail."""
        fell = any(d is not None and d < -tolerance for _, _, _, d in self.metrics)
        return fell or bool(self.new_findings) or (self.verdict[0] and not self.verdict[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": [{"metric": m, "old": o, "new": n, "delta": d} for m, o, n, d in self.metrics],
            "new_findings": self.new_findings,
            "resolved_findings": self.resolved_findings,
            "verdict": {"old": self.verdict[0], "new": self.verdict[1]},
        }


def _delta(old: float | None, new: float | None) -> float | None:
    return None if old is None or new is None else new - old


def _certified(report: dict[str, Any]) -> dict[str, float]:
    """Certified accuracy per threat, keyed "(method) label": bounds from different certifiers are
    different quantities, so they are only compared with their own kind."""
    cert = report.get("certification") or {}  # absent before schema 1.1, null when not requested
    return {
        f"({cert['method']}) {t['label']}": t["certified_accuracy"]
        for t in cert.get("threats", [])
        if t.get("status") == "measured"
    }


def compare_reports(old: dict[str, Any], new: dict[str, Any]) -> Comparison:
    """Compare clean, robust and certified accuracies per threat (matched by label) and the sets of
    findings (training-time threats show there: BA401-BA404)."""
    rows: list[tuple[str, float | None, float | None, float | None]] = []
    oc, nc = old["clean"]["accuracy"], new["clean"]["accuracy"]
    rows.append(("clean accuracy", oc, nc, _delta(oc, nc)))
    old_t = {t["label"]: t for t in old["threats"]}
    new_t = {t["label"]: t for t in new["threats"]}
    for label in dict.fromkeys([*old_t, *new_t]):
        for key, name in (("robust_accuracy", "robust"), ("naive_robust_accuracy", "white-box only")):
            o = old_t[label][key] if label in old_t else None
            n = new_t[label][key] if label in new_t else None
            rows.append((f"{name} {label}", o, n, _delta(o, n)))
    old_c, new_c = _certified(old), _certified(new)
    for key in dict.fromkeys([*old_c, *new_c]):
        o, n = old_c.get(key), new_c.get(key)
        rows.append((f"certified {key}", o, n, _delta(o, n)))

    def keyed(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(f["code"], f["threat"]): f for f in report["findings"]}

    ok, nk = keyed(old), keyed(new)
    return Comparison(
        metrics=rows,
        new_findings=[f for k, f in nk.items() if k not in ok],
        resolved_findings=[f for k, f in ok.items() if k not in nk],
        verdict=(bool(old["verdict"]["passed"]), bool(new["verdict"]["passed"])),
    )
