"""The tabular section: the constrained cascade under the audit's threat, robust accuracy in context.

The cascade (:class:`~bastion.tabular.TabularCascade`) runs constrained PGD on a differentiable model and
the genetic search (MoEvA2-style, Ghamizi et al. 2023) on what is left; on a black-box model (trees,
boosting, any scikit-learn estimator) only the genetic search runs, and every query is counted. Each
counted adversarial record is re-checked here against every constraint of the threat model
(:func:`bastion.tabular.satisfied`), independently of the attacks' own check (``BA603`` if one fails: a
bug). Beside robust accuracy: clean and balanced accuracy, the Matthews correlation coefficient and the
degenerate flag (:func:`bastion.tabular.robustness_report`): a model that predicts one class is "robust"
to an attacker who wants that class and useless otherwise (``BA602``; a constant model is also at chance,
``BA108``).

The headline row is ``tabular/<schema name>`` (with the budget when the threat sets one); ``BA301`` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.audit.findings import Finding, finding
from bastion.audit.sections.base import (
    AuditContext,
    CheckRun,
    HeadlineRow,
    MetricRow,
    Section,
    SectionResult,
    check,
)
from bastion.audit.sections.text import chance_checks, chance_findings
from bastion.errors import BastionError

__all__ = ["TabularSection", "tabular_label", "tabular_lines"]


def tabular_label(threat: Any) -> str:
    """The headline label of a tabular threat: ``tabular/<schema name>[ budget B]``."""
    name = threat.schema.name or "schema"
    return f"tabular/{name}" + (f" budget {threat.budget:g}" if threat.budget is not None else "")


def _plain(value: Any) -> Any:
    """A record's value as JSON: numbers and strings as they are, anything else as its text."""
    if isinstance(value, bool | int | str):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return int(f) if f.is_integer() else f


class TabularSection(Section):
    """``TabularSection(cascade=None)``: the attack (default ``TabularCascade()``: CPGD then MoEvA) here;
    model, records and threat (``ctx.extra["threat"]``) from the context.

    ``engine`` runs the cascade through the shard runner (:func:`bastion.engine.evaluate_tabular_sharded`:
    shards of ``shard_size`` records, kept in ``run_dir``); on an engine other than the local one the
    workers rebuild the model from ``spec`` over the records' schema. The same records as one pass."""

    name = "tabular"
    provides = ("adversarials",)
    template = "tabular.html.j2"

    def __init__(
        self,
        cascade: Any = None,
        *,
        engine: Any = None,
        spec: str | None = None,
        run_dir: Any = None,
        shard_size: int = 500,
    ) -> None:
        if engine is not None and engine.name != "local" and spec is None:
            raise BastionError("tabular section: the engine loads the model on its workers; give its spec")
        self.cascade = cascade
        self.engine, self.spec, self.run_dir, self.shard_size = engine, spec, run_dir, shard_size

    def run(self, ctx: AuditContext) -> SectionResult:
        from bastion.tabular import TabularCascade, robustness_report, satisfied
        from bastion.tabular.attacks import TabularCascadeResult

        model: Any = ctx.model  # a TabularClassifier (the context types the image audit's models)
        threat = ctx.extra["threat"]
        attack = self.cascade or TabularCascade()
        task, n = "tabular: constrained cascade", int(ctx.x.shape[0])
        ctx.progress(task, 0, n)
        if self.engine is None:
            outcome = attack(model, ctx.x, ctx.y.to(ctx.x.device), threat, seed=ctx.seed)
        else:
            from bastion.engine import TabularModelRef, evaluate_tabular_sharded

            if not isinstance(attack, TabularCascade):
                raise BastionError(
                    "tabular section: the shard runner runs a TabularCascade; wrap the attack as "
                    "TabularCascade((attack,))"
                )
            cascade, target = attack, model
            if self.engine.name != "local":
                assert self.spec is not None  # checked at construction
                target = TabularModelRef.create(self.spec, getattr(model, "schema", threat.schema))
            outcome = evaluate_tabular_sharded(
                cascade, target, ctx.x, ctx.y.to(ctx.x.device), threat, seed=ctx.seed,
                shard_size=self.shard_size, engine=self.engine, run_dir=self.run_dir,
                progress=lambda done, total: ctx.progress(task, done, total),
            )  # fmt: skip
        ctx.progress(task, n, n)
        result = outcome.result if isinstance(outcome, TabularCascadeResult) else outcome
        stages = [s.to_dict() for s in getattr(outcome, "stages", ())]
        ctx.clock.attack_seconds += result.seconds
        ctx.clock.log.append({"attack": result.attack, "purpose": "tabular", "threat": tabular_label(threat),
                              "seconds": result.seconds})  # fmt: skip
        counted = result.success.nonzero().flatten()
        recheck = satisfied(result.x_adv[counted], result.x[counted], threat).cpu()
        broken = counted.cpu()[~recheck].tolist()
        report = robustness_report(model, ctx.x, ctx.y.to(ctx.x.device), result)
        label = tabular_label(threat)
        summary = result.summary()
        block: dict[str, Any] = {
            "threat": {k: _json(v) for k, v in threat.to_dict().items()},
            "attack": result.attack,
            "stages": stages,
            "records": len(result),
            "robust_accuracy": result.robust_accuracy,
            "success_rate": result.success_rate,
            "n_counted": int(counted.numel()),
            "counted_valid": float(recheck.float().mean()) if counted.numel() else 1.0,
            "constraint_satisfaction": result.constraint_satisfaction,
            "mean_queries": summary["mean_queries"],
            "queries": result.queries,
            "gradient_evals": result.gradient_evals,
            "differentiable": bool(getattr(model, "differentiable", False)),
            "seconds": result.seconds,
            "robustness": report.to_dict(),
            "headline": [
                {
                    "label": label,
                    "clean_accuracy": report.clean_accuracy,
                    "robust_accuracy": result.robust_accuracy,
                    "note": "degenerate model: read balanced accuracy and MCC" if report.degenerate else "",
                }
            ],
            "examples": _examples(result, counted.tolist(), ctx.config.examples),
        }
        findings: list[Finding] = chance_findings(ctx)
        if report.degenerate:
            findings.append(finding("BA602", report.reason, threat=label, majority_prediction=
                                    report.majority_prediction, majority_label=report.majority_label,
                                    mcc=report.mcc, balanced_accuracy=report.balanced_accuracy))  # fmt: skip
        if broken:
            findings.append(finding(
                "BA603", f"{len(broken)} of {counted.numel()} counted adversarial records break the threat "
                f"model (records {broken[:10]})", threat=label, records=broken[:50],
            ))  # fmt: skip
        checks: list[CheckRun] = [
            *chance_checks(ctx),
            check("BA602", label, not report.degenerate, majority_prediction=report.majority_prediction,
                  majority_label=report.majority_label),
            check("BA603", label, not broken, counted=int(counted.numel())),
        ]  # fmt: skip
        return SectionResult(
            block,
            tuple(findings),
            tuple(checks),
            {"adversarials": [HeadlineRow(label, result.robust_accuracy)]},
        )

    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[MetricRow]:
        """Robust, balanced accuracy and MCC (clipped at 0) per threat label."""
        o, n = _metrics(old), _metrics(new)
        return [(k, o.get(k), n.get(k)) for k in dict.fromkeys([*o, *n])]


def _examples(result: Any, rows: list[int], k: int) -> list[dict[str, Any]]:
    """Up to ``k`` flipped records among ``rows`` that the attack changed, as their changed features."""
    out: list[dict[str, Any]] = []
    for i in rows:
        if len(out) >= k:
            break
        if not bool(result.changed[i].any()):
            continue  # already misclassified: nothing to show
        changes = [{"feature": f, "before": _plain(a), "after": _plain(b)} for f, a, b in result.changes(i)]
        out.append({"index": i, "label": int(result.y[i]), "prediction": int(result.predictions[i]),
                    "changes": changes})  # fmt: skip
    return out


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _metrics(report: Mapping[str, Any]) -> dict[str, float]:
    block = report.get("tabular") or {}
    out: dict[str, float] = {}
    for h in block.get("headline", []):
        out[f"robust {h['label']}"] = h["robust_accuracy"]
        out[f"balanced accuracy {h['label']}"] = block["robustness"]["balanced_accuracy"]
    return out


def tabular_lines(block: Mapping[str, Any]) -> list[str]:
    """The ``tabular`` block as markdown for summary.md: a heading, a blank, bullets, a blank."""
    r = block["robustness"]
    lines = [f"**Tabular attack** ({block['attack']}, every counted record re-checked):", ""]
    lines.append(
        f"- robust accuracy **{block['robust_accuracy']:.1%}** (clean {r['clean_accuracy']:.1%}, balanced "
        f"{r['balanced_accuracy']:.1%}, MCC {r['mcc']:.2f}); counted adversarials valid "
        f"{block['counted_valid']:.1%}; {block['mean_queries']:.0f} queries per record"
    )
    if r["degenerate"]:
        lines.append(f"- **degenerate model**: {r['reason']}")
    return [*lines, ""]
