"""The evasion section: every configured threat model attacked by the preset's cascade, the black-box
probes and the attack-quality checks (:mod:`bastion.audit.cascade`); the report's ``threats`` rows.

Declares ``adversarials``: one :class:`AuditedThreat` per threat (the adversarial found for each input
and which inputs any attack fooled), read by the detector and certification sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bastion.audit.cascade import audit_threat, threat_label
from bastion.audit.config import AuditConfig
from bastion.audit.defended import bpda_view
from bastion.audit.findings import Finding
from bastion.audit.report import Example
from bastion.audit.sections.base import AuditContext, CheckRun, MetricRow, Section, SectionResult
from bastion.audit.vanishing import vanishing_gradients_check
from bastion.model import Classifier
from bastion.threat import ThreatModel

__all__ = ["AuditedThreat", "EvasionSection"]


@dataclass(frozen=True)
class AuditedThreat:
    """One audited threat for later sections: ``x_adv`` (N, ...) the adversarial found for each input
    (the input itself where none was), ``fooled`` (N,) bool the inputs any attack fooled."""

    threat: ThreatModel
    label: str
    robust_accuracy: float
    x_adv: torch.Tensor
    fooled: torch.Tensor


class EvasionSection(Section):
    name = "threats"
    requires = ("facts", "blocked")
    provides = ("adversarials",)
    template = "evasion.html.j2"
    required_key = True

    def off(self, config: AuditConfig) -> list[Any]:
        return []

    def run(self, ctx: AuditContext) -> SectionResult:
        if ctx.output("blocked"):
            return SectionResult([], outputs={"adversarials": []})
        cfg = ctx.config
        bpda = bpda_view(ctx.network, cfg) if cfg.defense else None
        rows: list[dict[str, Any]] = []
        findings: list[Finding] = []
        ran: list[CheckRun] = []
        audited: list[AuditedThreat] = []
        examples: list[Example] = []
        for i, (norm, eps) in enumerate(cfg.threats):
            threat = ThreatModel(norm, eps, bounds=ctx.model.bounds)
            out = audit_threat(
                ctx.model, ctx.x, ctx.y, ctx.correct, threat, cfg, ctx.output("facts"), ctx.clock,
                ctx.progress, i, bpda,
            )  # fmt: skip
            rows.append(out.row)
            findings += out.findings
            ran += out.checks
            found = vanishing_gradients_check(out.row, int(ctx.x.shape[0]), cfg.checks)
            if found is not None:
                f, c = found
                findings += [f] if f else []
                ran.append(c)
            audited.append(AuditedThreat(threat, threat_label(threat), out.row["robust_accuracy"],
                                         out.x_adv, out.fooled))  # fmt: skip
            if not examples and cfg.examples:
                examples = _examples(ctx.model, ctx.x, ctx.y, out.x_adv, out.fooled, cfg.examples)
        return SectionResult(
            rows, tuple(findings), tuple(ran), {"adversarials": audited}, {"examples": examples}
        )

    def figures(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, Any]:
        from bastion.audit.plots import examples_figure, per_class_figure

        examples = artifacts.get("examples") or []
        threats = report["threats"]
        return {
            "examples": examples_figure(examples, report["data"]["class_names"]) if examples else None,
            "per_class": per_class_figure(report["clean"], threats[0]) if threats else None,
        }

    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[MetricRow]:
        """Robust accuracy (adaptive and white-box only) per threat, matched by label."""
        old_t = {t["label"]: t for t in old.get("threats", [])}
        new_t = {t["label"]: t for t in new.get("threats", [])}
        rows: list[MetricRow] = []
        for label in dict.fromkeys([*old_t, *new_t]):
            for key, name in (("robust_accuracy", "robust"), ("naive_robust_accuracy", "white-box only")):
                rows.append((f"{name} {label}", old_t.get(label, {}).get(key), new_t.get(label, {}).get(key)))
        return rows


def _examples(
    clf: Classifier, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, fooled: torch.Tensor, k: int
) -> list[Example]:
    idx = fooled.nonzero().flatten()[:k]
    if idx.numel() == 0:
        return []
    with torch.no_grad():
        p_clean = torch.softmax(clf(x[idx]), dim=1)
        p_adv = torch.softmax(clf(x_adv[idx]), dim=1)
    out = []
    for j, i in enumerate(idx.tolist()):
        adv_label = int(p_adv[j].argmax())
        out.append(
            Example(
                index=i,
                label=int(y[i]),
                clean_confidence=float(p_clean[j, int(y[i])]),
                adversarial_label=adv_label,
                adversarial_confidence=float(p_adv[j, adv_label]),
                x=x[i].detach().cpu(),
                x_adv=x_adv[i].detach().cpu(),
            )
        )
    return out
