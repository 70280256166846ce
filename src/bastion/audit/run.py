"""``run_audit``: the shared context, the pipeline of sections, the gate and the verdict.

Each part of the audit is a section (:mod:`bastion.audit.sections`): pre-checks, evasion (the preset's
cascade per threat, the black-box probes, the attack-quality checks), a detector, certification, the
robustness curve and the training-time scans. This module only builds the context they share, runs
them in order, and assembles their blocks, findings and checks into one :class:`AuditReport`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bastion.audit.config import AuditConfig
from bastion.audit.defended import naive_view
from bastion.audit.environment import environment, tensor_sha256
from bastion.audit.findings import Finding, finding
from bastion.audit.prechecks import provenance
from bastion.audit.probes import Clock
from bastion.audit.report import SCHEMA_VERSION, AuditReport
from bastion.audit.sections import SECTIONS, AuditContext, CheckRun, Section, check, validate_pipeline
from bastion.audit.sections.base import Progress
from bastion.audit.verdict import verdict_block
from bastion.data.dataset import Dataset
from bastion.errors import DataError
from bastion.model import Classifier, as_classifier, predict

__all__ = ["Progress", "run_audit", "run_sections"]


def _quiet(task: str, done: int, total: int) -> None:
    return None


def run_audit(
    model: Classifier | nn.Module,
    data: Dataset,
    config: AuditConfig | None = None,
    *,
    progress: Progress | None = None,
    model_name: str | None = None,
    sections: Sequence[Section] | None = None,
    threat: Any = None,
    batches: Any = None,
) -> AuditReport:
    """Audit ``model`` on ``data`` (the first ``config.limit`` samples). Deterministic for a seed.

    ``sections`` replaces the default pipeline (:data:`bastion.audit.sections.SECTIONS`), e.g. to add a
    section of your own; each runs when its ``enabled(config)`` says so, in order.

    Text and tabular models are audited by their own pipelines, chosen by the data: a
    :class:`~bastion.text.TextData` runs :data:`~bastion.audit.sections.TEXT_SECTIONS` on a text
    classifier (:func:`bastion.audit.run_text.run_text_audit`), a :class:`~bastion.tabular.TabularData`
    runs :data:`~bastion.audit.sections.TABULAR_SECTIONS` under ``threat`` (a
    :class:`~bastion.tabular.TabularThreatModel`; default: the schema's own limits;
    :func:`bastion.audit.run_tabular.run_tabular_audit`). Same report, verdict and findings.

    ``batches`` (a :class:`bastion.engine.batches.AttackBatches` over ``model``) sends the attack batches
    on the audited model to the shard runner (Ray, a run directory for resuming); the report is the same.
    """
    from bastion.tabular.data import TabularData
    from bastion.text.data import TextData

    if isinstance(data, TextData):
        from bastion.audit.run_text import run_text_audit

        return run_text_audit(
            model, data, config, progress=progress, model_name=model_name, sections=sections
        )
    if isinstance(data, TabularData):
        from bastion.audit.run_tabular import run_tabular_audit

        return run_tabular_audit(
            model, data, config, threat=threat, progress=progress, model_name=model_name, sections=sections
        )
    cfg = config or AuditConfig()
    pipeline = tuple(SECTIONS if sections is None else sections)
    validate_pipeline(pipeline)
    start = time.perf_counter()
    clock = Clock(batches=batches)
    network = as_classifier(model, bounds=data.bounds)  # weights-level scans never look through a defense
    if batches is not None:
        batches.live = network  # the audited network's batches go to the engine (not a defended view's)
    clf = naive_view(network, cfg) if cfg.defense else network
    enabled = [s for s in pipeline if s.enabled(cfg)]
    preparations = {s.name: s.prepare(cfg) for s in enabled}  # before any attack: a wrong path fails now
    n = min(len(data), cfg.limit) if cfg.limit else len(data)
    if n == 0:
        raise DataError("the data set is empty; nothing to audit")
    x, y = data.x[:n].detach(), data.y[:n]
    clean_logits = predict(clf, x, batch_size=cfg.batch_size)
    ctx = AuditContext(
        model=clf,
        network=network,
        data=data,
        x=x,
        y=y,
        clean_logits=clean_logits,
        correct=clean_logits.argmax(1) == y,
        config=cfg,
        clock=clock,
        progress=progress or _quiet,
        preparations=preparations,
        source=provenance(model, data),
    )
    blocks, artifacts, findings, ran = run_sections(ctx, pipeline, enabled)
    total = time.perf_counter() - start
    return AuditReport(
        schema_version=SCHEMA_VERSION,
        model={
            "name": model_name or getattr(clf, "name", type(clf).__name__),
            "sha256": _model_sha256(clf),
            "num_classes": int(clean_logits.shape[1]),
            "bounds": list(clf.bounds),
            "input_shape": list(x.shape[1:]),
            "modality": "image",
            "source": ctx.source,
        },
        data={
            "name": data.name,
            "n_samples": n,
            "n_available": len(data),
            "sha256": tensor_sha256(x, y),
            "class_names": list(data.class_names),
        },
        config=cfg.to_dict(),
        clean=_clean(clean_logits, y, ctx.correct, data.class_names),
        checks=[c.to_dict() for c in ran],
        findings=[f.to_dict() for f in findings],
        verdict=verdict_block(
            findings,
            fail_on=cfg.fail_on,
            min_robust_accuracy=cfg.min_robust_accuracy,
            blocked=bool(ctx.outputs.get("blocked")),
        ),
        timing={
            "seconds": total,
            "attack_seconds": clock.attack_seconds,
            "overhead_fraction": max(0.0, 1 - clock.attack_seconds / total) if total > 0 else 0.0,
            "attacks": clock.log,
        },
        environment=environment(x.device),
        sections=blocks,
        artifacts=artifacts,
        pipeline=[s.name for s in pipeline],
        section_objects=pipeline,
    )


def run_sections(
    ctx: AuditContext, pipeline: Sequence[Section], enabled: Sequence[Section]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[Finding], list[CheckRun]]:
    """Run ``pipeline`` on ``ctx`` (the ``enabled`` ones; the others' blocks are :meth:`Section.off`),
    then the robust-accuracy gate (``BA301``) over the declared ``adversarials``: ``(blocks, artifacts,
    findings sorted by severity, checks run)``. Shared by the image, text and tabular audits."""
    cfg = ctx.config
    blocks: dict[str, Any] = {}
    artifacts: dict[str, dict[str, Any]] = {}
    findings: list[Finding] = []
    ran: list[CheckRun] = []
    for section in pipeline:
        if section not in enabled:
            blocks[section.name] = section.off(cfg)
            ctx.outputs.update(dict.fromkeys(section.provides))
            continue
        result = section.run(ctx)
        blocks[section.name] = result.block
        artifacts[section.name] = dict(result.artifacts)
        findings += result.findings
        ran += result.checks
        ctx.outputs.update({k: result.outputs.get(k) for k in section.provides})
    gate = _gate(ctx.outputs.get("adversarials") or [], cfg)
    findings += gate
    ran.append(check("BA301", "all", not gate, minimum=cfg.min_robust_accuracy))
    findings.sort(key=lambda f: (-int(f.severity), f.code, f.threat))
    return blocks, artifacts, findings, ran


def _clean(
    logits: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, names: tuple[str, ...]
) -> dict[str, Any]:
    per_class = []
    for c in torch.unique(y).tolist():
        m = y == c
        name = names[c] if c < len(names) else str(c)
        per_class.append(
            {"class": int(c), "name": name, "n": int(m.sum()), "accuracy": float(correct[m].float().mean())}
        )
    return {
        "accuracy": float(correct.float().mean()),
        "n_correct": int(correct.sum()),
        "per_class": per_class,
    }


def _gate(audited: list[Any], cfg: AuditConfig) -> list[Finding]:
    """``BA301`` for every audited threat whose adaptive robust accuracy is below the required minimum."""
    out = []
    for a in audited:
        if a.robust_accuracy < cfg.min_robust_accuracy:
            out.append(
                finding(
                    "BA301",
                    f"robust accuracy {a.robust_accuracy:.1%} at {a.label} is below the required "
                    f"{cfg.min_robust_accuracy:.1%}",
                    threat=a.label,
                    robust_accuracy=a.robust_accuracy,
                    minimum=cfg.min_robust_accuracy,
                )
            )
    return out


def _model_sha256(clf: Classifier) -> str | None:
    module = getattr(getattr(clf, "model", clf), "module", None)  # a defended model: the one inside
    if not isinstance(module, nn.Module):
        return None
    state = module.state_dict()
    return tensor_sha256(*(state[k] for k in sorted(state)))
