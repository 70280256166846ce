"""The text audit: a text classifier on labelled texts, through :data:`TEXT_SECTIONS`.

Builds the shared context from a :class:`~bastion.text.TextClassifier` (a callable ``list[str] ->
logits (N, K)``) and a :class:`~bastion.text.TextData` (the first ``config.limit`` texts), then runs the
pipeline and assembles the same :class:`~bastion.audit.report.AuditReport` as for images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.audit._modal import ModalInputs, run_modal_audit
from bastion.audit.config import AuditConfig
from bastion.audit.report import AuditReport
from bastion.audit.sections.base import Progress, Section
from bastion.errors import DataError
from bastion.text.data import TextData, texts_sha256
from bastion.text.model import as_text_classifier

__all__ = ["run_text_audit", "texts_sha256"]


def run_text_audit(
    model: Any,
    data: TextData,
    config: AuditConfig | None = None,
    *,
    progress: Progress | None = None,
    model_name: str | None = None,
    sections: Sequence[Section] | None = None,
) -> AuditReport:
    """Audit a text classifier (or a fitted scikit-learn text pipeline) on ``data``'s first
    ``config.limit`` texts with ``sections`` (default :data:`bastion.audit.sections.TEXT_SECTIONS`)."""
    from bastion.audit.sections import TEXT_SECTIONS

    cfg = config or AuditConfig()
    clf = as_text_classifier(model)
    n = min(len(data), cfg.limit) if cfg.limit else len(data)
    if n == 0:
        raise DataError("the data set is empty; nothing to audit")
    texts, y = list(data.texts[:n]), data.labels[:n]
    logits = clf(texts).float().cpu()
    if logits.shape[1] != data.num_classes:
        raise DataError(
            f"the model predicts {logits.shape[1]} classes but {data.name} has {data.num_classes}; pair the "
            "model with its own data"
        )
    inputs = ModalInputs(
        x=texts,
        y=y,
        logits=logits,
        name=data.name,
        class_names=data.class_names,
        n_available=len(data),
        sha256=texts_sha256(texts, y),
        input_shape=None,
    )
    return run_modal_audit(
        clf, data, inputs, cfg, TEXT_SECTIONS if sections is None else sections,
        modality="text", progress=progress, model_name=model_name,
    )  # fmt: skip
