"""What got better or worse between two audit reports (``report.json`` files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.audit.config import ConfigError
from bastion.audit.report import SCHEMA_VERSION

if TYPE_CHECKING:
    from bastion.audit.sections import Section

__all__ = ["Comparison", "check_comparable", "compare_reports", "incomparable", "read_report"]


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
    sections: list[str] = field(default_factory=list)
    """The section each metric row came from (``clean`` for the first), aligned with ``metrics``."""

    def regressions(self, tolerance: float = 0.0) -> list[str]:
        """Each reason :meth:`regressed` is true, one line each: the metric that fell (old -> new),
        the finding that appeared, the verdict that turned to fail."""
        out = [
            f"{m} fell {100 * -d:.1f} pts ({100 * o:.1f}% -> {100 * n:.1f}%)"
            for m, o, n, d in self.metrics
            if d is not None and d < -tolerance and o is not None and n is not None
        ]
        out += [f"new finding {f['code']} {f['title']} ({f['threat'] or 'model'})" for f in self.new_findings]
        if self.verdict[0] and not self.verdict[1]:
            out.append("verdict PASS -> FAIL")
        return out

    def regressed(self, tolerance: float = 0.0) -> bool:
        """A metric fell by more than ``tolerance``, a finding appeared, or the verdict turned to fail."""
        fell = any(d is not None and d < -tolerance for _, _, _, d in self.metrics)
        return fell or bool(self.new_findings) or (self.verdict[0] and not self.verdict[1])

    def _origins(self) -> list[str | None]:
        return list(self.sections) if len(self.sections) == len(self.metrics) else [None] * len(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": [
                {"metric": m, "old": o, "new": n, "delta": d, "section": s}
                for (m, o, n, d), s in zip(self.metrics, self._origins(), strict=True)
            ],
            "new_findings": self.new_findings,
            "resolved_findings": self.resolved_findings,
            "verdict": {"old": self.verdict[0], "new": self.verdict[1]},
        }


def _get(report: dict[str, Any], block: str, key: str) -> Any:
    part = report.get(block)
    return part.get(key) if isinstance(part, dict) else None


def incomparable(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why two reports do not measure the same thing, one item per difference (empty when they do):
    another model (its name, input shape or classes) or other data (its name or the audited samples'
    sha256). Different weights under the same model name are what a comparison is for, so the model's
    sha256 may differ."""
    checks = (
        ("model", "name", "model"),
        ("model", "input_shape", "model input shape"),
        ("model", "num_classes", "model classes"),
        ("data", "name", "data"),
        ("data", "sha256", "audited samples (sha256)"),
    )
    out = []
    for block, key, what in checks:
        a, b = _get(old, block, key), _get(new, block, key)
        if a is not None and b is not None and a != b:
            short = (lambda v: v[:12] + "…") if key == "sha256" else (lambda v: v)
            out.append(f"{what} {short(a)} -> {short(b)}")
    return out


def check_comparable(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise ConfigError (one line) when :func:`incomparable` finds a difference."""
    why = incomparable(old, new)
    if why:
        raise ConfigError(
            f"the reports audit different things ({'; '.join(why)}): their numbers are not comparable; "
            "pass --force to compare them anyway"
        )


def _delta(old: float | None, new: float | None) -> float | None:
    return None if old is None or new is None else new - old


def compare_reports(
    old: dict[str, Any], new: dict[str, Any], sections: Sequence[Section] | None = None
) -> Comparison:
    """Compare clean accuracy, then each section's metrics (its :meth:`Section.compare`: robust
    accuracy per threat matched by label, certified accuracy per certifier, ...), and the sets of
    findings (training-time threats show there: BA401-BA404)."""
    from bastion.audit.sections import SECTIONS, TABULAR_SECTIONS, TEXT_SECTIONS

    oc, nc = old["clean"]["accuracy"], new["clean"]["accuracy"]
    rows: list[tuple[str, float | None, float | None, float | None]] = [
        ("clean accuracy", oc, nc, _delta(oc, nc))
    ]
    origins = ["clean"]
    # every built-in pipeline's sections: each compares only the blocks a report holds
    for section in (*SECTIONS, *TEXT_SECTIONS, *TABULAR_SECTIONS) if sections is None else sections:
        for metric, o, n in section.compare(old, new):
            rows.append((metric, o, n, _delta(o, n)))
            origins.append(section.name)

    def keyed(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(f["code"], f["threat"]): f for f in report["findings"]}

    ok, nk = keyed(old), keyed(new)
    return Comparison(
        metrics=rows,
        sections=origins,
        new_findings=[f for k, f in nk.items() if k not in ok],
        resolved_findings=[f for k, f in ok.items() if k not in nk],
        verdict=(bool(old["verdict"]["passed"]), bool(new["verdict"]["passed"])),
    )
