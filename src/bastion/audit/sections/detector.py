"""The detector section: how many of the evasion section's adversarials a configured detector flags,
and how many an adaptive attack gets past it (:mod:`bastion.audit.detectors`).

Block ``detector``: the detector, its false-positive rate and one row per audited threat. Schema 1.x
also copies each row into the threat's ``threats[i].detector`` (where 1.0-1.2 reports kept it).
"""

from __future__ import annotations

from typing import Any

from bastion.audit.config import AuditConfig
from bastion.audit.sections.base import AuditContext, Section, SectionResult

__all__ = ["DetectorSection"]


class DetectorSection(Section):
    name = "detector"
    requires = ("adversarials",)
    template = "detector.html.j2"

    def enabled(self, config: AuditConfig) -> bool:
        return config.detector is not None

    def run(self, ctx: AuditContext) -> SectionResult:
        from bastion.audit.detectors import audit_detector  # only audits that measure one

        cfg = ctx.config
        rows: list[dict[str, Any]] = []
        for audited in ctx.output("adversarials"):
            task = f"{audited.label}: detector"
            ctx.progress(task, 0, 1)
            row = audit_detector(
                ctx.model, ctx.x, ctx.y, ctx.correct, audited.threat, audited.x_adv, audited.fooled, cfg,
                ctx.clock, cfg.seed + 60,
            )  # fmt: skip
            rows.append({"label": audited.label, **row})
            ctx.progress(task, 1, 1)
        return SectionResult({"detector": cfg.detector, "fpr": cfg.detector_fpr, "threats": rows})
