"""The audit: one command, one honest red-team report.

>>> from bastion.audit import AuditConfig, run_audit, write_report
>>> report = run_audit(model, dataset, AuditConfig(threats=(("linf", 0.1),)))
>>> write_report(report, "audit-out")   # report.html, report.json, summary.md
"""

from __future__ import annotations

from bastion.audit.config import AuditConfig, ConfigError, load_config
from bastion.audit.findings import CATALOG, Finding, Severity
from bastion.audit.report import SCHEMA_VERSION, AuditReport
from bastion.audit.run import run_audit

__all__ = [
    "CATALOG",
    "SCHEMA_VERSION",
    "AuditConfig",
    "AuditReport",
    "ConfigError",
    "Finding",
    "Severity",
    "load_config",
    "run_audit",
    "write_report",
]


def write_report(report: AuditReport, out_dir: str, **kwargs: object) -> dict[str, str]:
    """Write report.json, report.html and summary.md into ``out_dir``; returns their paths."""
    from bastion.audit.render import write_report as _write

    return _write(report, out_dir, **kwargs)
