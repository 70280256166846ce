"""The curve section: robust accuracy against epsilon per norm, each point attacked from scratch, up to
where it reaches about zero (:mod:`bastion.audit.curve`), and the monotonicity check ``BA202``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.audit import checks
from bastion.audit.config import AuditConfig
from bastion.audit.curve import robustness_curve
from bastion.audit.findings import Finding
from bastion.audit.sections.base import AuditContext, CheckRun, Section, SectionResult, check

__all__ = ["CurveSection"]


class CurveSection(Section):
    name = "curves"
    requires = ("facts", "blocked")
    template = "curves.html.j2"
    required_key = True

    def enabled(self, config: AuditConfig) -> bool:
        return config.curve

    def off(self, config: AuditConfig) -> list[Any]:
        return []

    def run(self, ctx: AuditContext) -> SectionResult:
        if ctx.output("blocked"):
            return SectionResult([])
        cfg = ctx.config
        n = int(ctx.x.shape[0])
        curves: list[dict[str, Any]] = []
        findings: list[Finding] = []
        ran: list[CheckRun] = []
        for norm in dict.fromkeys(nm for nm, _ in cfg.threats):
            eps_max = max(e for nm, e in cfg.threats if nm is norm)
            curve, _ = robustness_curve(
                ctx.model, ctx.x, ctx.y, ctx.correct, norm, eps_max, cfg, ctx.clock,
                ctx.output("facts").differentiable, ctx.progress,
            )  # fmt: skip
            curves.append(curve)
            if cfg.checks:
                points = [(p["epsilon"], p["robust_accuracy"]) for p in curve["points"]]
                f = checks.monotone_in_epsilon(points, n, norm.value)
                ran.append(check("BA202", norm.value, f is None, points=len(points)))
                findings += [f] if f else []
        return SectionResult(curves, tuple(findings), tuple(ran))

    def figures(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, Any]:
        from bastion.audit.plots import curve_figure

        # The audited thresholds' numbers are drawn on the curve for comparison (rendering only).
        threats = report.get("threats", [])
        return {"curves": [curve_figure(c, threats) for c in report["curves"] if len(c["points"]) > 1]}
