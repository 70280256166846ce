"""The certification section: a proven lower bound beside the attacks' upper bound
(:mod:`bastion.audit.certification`: IBP for linf, randomized smoothing for l2; ``BA209``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.audit.config import AuditConfig
from bastion.audit.sections.base import AuditContext, CheckRun, MetricRow, Section, SectionResult

__all__ = ["CertificationSection"]


class CertificationSection(Section):
    name = "certification"
    requires = ("blocked", "adversarials")
    template = "certification.html.j2"

    def enabled(self, config: AuditConfig) -> bool:
        return config.certify is not None

    def run(self, ctx: AuditContext) -> SectionResult:
        from bastion.audit.certification import audit_certification, certification_block

        if ctx.output("blocked"):
            note = "not run: the audit stopped before any attack (BA106)"
            return SectionResult(certification_block(ctx.config, note))
        audited = [(a.threat, a.robust_accuracy, a.fooled) for a in ctx.output("adversarials")]
        block, findings, ran = audit_certification(ctx.model, ctx.x, ctx.y, audited, ctx.config, ctx.progress)
        return SectionResult(block, tuple(findings), tuple(CheckRun(**c) for c in ran))

    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[MetricRow]:
        """Certified accuracy per threat, keyed "(method) label": bounds from different certifiers are
        different quantities, so each is compared only with its own kind."""
        old_c, new_c = _certified(old), _certified(new)
        return [(f"certified {k}", old_c.get(k), new_c.get(k)) for k in dict.fromkeys([*old_c, *new_c])]


def _certified(report: Mapping[str, Any]) -> dict[str, float]:
    cert = report.get("certification") or {}  # absent before schema 1.1, null when not requested
    return {
        f"({cert['method']}) {t['label']}": t["certified_accuracy"]
        for t in cert.get("threats", [])
        if t.get("status") == "measured"
    }
