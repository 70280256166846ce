"""What the text and tabular audits share: the context, the pipeline, the gate and the report.

The image audit (:func:`bastion.audit.run.run_audit`) builds its context from tensors with bounds; a text
or tabular audit has neither bounds nor (for text) an input shape, so its model block says so (``bounds``
and ``input_shape`` null, ``modality``; schema 1.5) and the rest of the report is the same.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bastion.audit.config import AuditConfig
from bastion.audit.environment import environment, tensor_sha256
from bastion.audit.probes import Clock
from bastion.audit.report import SCHEMA_VERSION, AuditReport
from bastion.audit.sections.base import AuditContext, Progress, Section, validate_pipeline
from bastion.audit.verdict import verdict_block
from bastion.errors import DataError

__all__ = ["ModalInputs", "run_modal_audit"]


@dataclass(frozen=True)
class ModalInputs:
    """The audited inputs of a text or tabular audit: ``x`` (N strings or (N, D) records), ``y`` (N,),
    the clean ``logits`` (N, K), the data's ``name``, ``class_names``, ``n_available`` rows before the
    limit, its ``sha256`` and the model's ``input_shape`` (None for text)."""

    x: Any
    y: torch.Tensor
    logits: torch.Tensor
    name: str
    class_names: tuple[str, ...]
    n_available: int
    sha256: str
    input_shape: list[int] | None


def _quiet(task: str, done: int, total: int) -> None:
    return None


def model_sha256(model: Any) -> str | None:
    """sha256 of the parameters of the PyTorch module inside ``model`` (None for other models)."""
    for inner in (model, getattr(model, "model", None)):
        module = getattr(inner, "module", None)
        if isinstance(module, nn.Module):
            state = module.state_dict()
            return tensor_sha256(*(state[k] for k in sorted(state))) if state else None
    return None


def run_modal_audit(
    model: Any,
    data: Any,
    inputs: ModalInputs,
    cfg: AuditConfig,
    pipeline: Sequence[Section],
    *,
    modality: str,
    progress: Progress | None,
    model_name: str | None,
    extra: dict[str, Any] | None = None,
) -> AuditReport:
    """Run ``pipeline`` on a text or tabular model and assemble the :class:`AuditReport`."""
    from bastion.audit.run import _clean, run_sections

    start = time.perf_counter()
    sections = tuple(pipeline)
    validate_pipeline(sections)
    n = int(inputs.y.shape[0])
    if n == 0:
        raise DataError("the data set is empty; nothing to audit")
    clock = Clock()
    enabled = [s for s in sections if s.enabled(cfg)]
    correct = inputs.logits.argmax(1) == inputs.y
    ctx = AuditContext(
        model=model,
        network=model,
        data=data,
        x=inputs.x,
        y=inputs.y,
        clean_logits=inputs.logits,
        correct=correct,
        config=cfg,
        clock=clock,
        progress=progress or _quiet,
        preparations={s.name: s.prepare(cfg) for s in enabled},
        extra=dict(extra or {}),
    )
    blocks, artifacts, findings, ran = run_sections(ctx, sections, enabled)
    total = time.perf_counter() - start
    return AuditReport(
        schema_version=SCHEMA_VERSION,
        model={
            "name": model_name or getattr(model, "name", None) or type(model).__name__,
            "sha256": model_sha256(model),
            "num_classes": int(inputs.logits.shape[1]),
            "bounds": None,
            "input_shape": inputs.input_shape,
            "modality": modality,
        },
        data={
            "name": inputs.name,
            "n_samples": n,
            "n_available": inputs.n_available,
            "sha256": inputs.sha256,
            "class_names": list(inputs.class_names),
        },
        config=cfg.to_dict(),
        clean=_clean(inputs.logits, inputs.y, correct, inputs.class_names),
        checks=[c.to_dict() for c in ran],
        findings=[f.to_dict() for f in findings],
        verdict=verdict_block(
            findings, fail_on=cfg.fail_on, min_robust_accuracy=cfg.min_robust_accuracy, blocked=False
        ),
        timing={
            "seconds": total,
            "attack_seconds": clock.attack_seconds,
            "overhead_fraction": max(0.0, 1 - clock.attack_seconds / total) if total > 0 else 0.0,
            "attacks": clock.log,
        },
        environment=environment(torch.device("cpu")),
        sections=blocks,
        artifacts=artifacts,
        pipeline=[s.name for s in sections],
        section_objects=sections,
    )
