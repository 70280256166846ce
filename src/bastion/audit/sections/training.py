"""The training-time section: a backdoor in the model, poison or flipped labels in its training data,
training data that no longer matches its manifest (:mod:`bastion.audit.training_threats`, ``BA401``-
``BA404``). The training data and manifest are loaded in :meth:`prepare`, before any attack, so a wrong
path fails the audit at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.audit.config import AuditConfig
from bastion.audit.sections.base import AuditContext, CheckRun, Section, SectionResult

__all__ = ["TrainingSection"]


class TrainingSection(Section):
    name = "training_threats"
    requires = ("facts",)
    template = "training.html.j2"

    def enabled(self, config: AuditConfig) -> bool:
        return bool(config.scan_model or config.scan_data or config.training_manifest)

    def prepare(self, config: AuditConfig) -> Any:
        from bastion.audit.training_threats import load_training

        return load_training(config)

    def run(self, ctx: AuditContext) -> SectionResult:
        from bastion.audit.training_threats import audit_training_threats

        train, manifest = ctx.prepared(self.name)
        facts = ctx.output("facts")
        scans = audit_training_threats(
            ctx.network, ctx.x, ctx.data.class_names, train, manifest, ctx.config, ctx.progress,
            differentiable=facts.differentiable if facts else None,
        )  # fmt: skip
        return SectionResult(
            scans.block,
            tuple(scans.findings),
            tuple(CheckRun(**c) for c in scans.checks),
            artifacts={"triggers": scans.triggers},
        )

    def figures(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, Any]:
        from bastion.audit.plots import triggers_figure

        triggers = artifacts.get("triggers") or []
        return {"triggers": triggers_figure(triggers) if triggers else None}
