"""The pre-checks section: conditions on the data and the model that make attacks lie (``BA101``-``BA107``),
and audits that would measure nothing (``BA108``-``BA110``: clean accuracy at chance, a factory's random
initialisation, bounds guessed from the data's range).

It runs first and declares two outputs: ``facts`` (what it measured on the model, None when the data
stopped the audit) and ``blocked`` (inputs outside the model's bounds, ``BA106``: no attack runs then).
"""

from __future__ import annotations

from bastion.audit.prechecks import check_clean_accuracy, check_data, check_model, check_provenance
from bastion.audit.sections.base import AuditContext, Section, SectionResult, check

__all__ = ["PrechecksSection"]

_MODEL_CODES = ("BA101", "BA102", "BA103", "BA104", "BA105")


class PrechecksSection(Section):
    name = "prechecks"
    provides = ("facts", "blocked")
    required_key = True

    def off(self, config: object) -> dict[str, object]:
        return {}

    def run(self, ctx: AuditContext) -> SectionResult:
        cfg = ctx.config
        epsilons = [eps for _, eps in cfg.threats]
        findings = check_provenance(ctx.source, ctx.model.bounds, epsilons) + check_data(
            ctx.x, ctx.model.bounds
        )
        codes = {f.code for f in findings}
        ran = [check(c, "model", c not in codes) for c in ("BA109",)]
        ran += [check(c, "data", c not in codes) for c in ("BA110", "BA106", "BA107")]
        if "BA106" in codes:  # inputs outside the bounds: their clean accuracy says nothing of the model
            return SectionResult({}, tuple(findings), tuple(ran), {"facts": None, "blocked": True})
        chance = check_clean_accuracy(ctx.correct, ctx.y)
        findings += [chance] if chance else []
        ran.append(check("BA108", "model", chance is None, clean_accuracy=float(ctx.correct.float().mean())))
        ctx.progress("pre-checks", 0, 1)
        n = cfg.check_samples
        facts, model_findings = check_model(ctx.model, ctx.x[:n], ctx.y[:n])
        flagged = {f.code for f in model_findings}
        ran += [check(c, "model", c not in flagged) for c in _MODEL_CODES]
        ctx.progress("pre-checks", 1, 1)
        outputs = {"facts": facts, "blocked": False}
        return SectionResult(facts.to_dict(), (*findings, *model_findings), tuple(ran), outputs)
