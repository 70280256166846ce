"""The tabular audit: a tabular classifier on records of a feature schema, through
:data:`TABULAR_SECTIONS`, under one :class:`~bastion.tabular.TabularThreatModel`.

Builds the shared context from a :class:`~bastion.tabular.TabularClassifier` (or a fitted scikit-learn
estimator with ``predict_proba``, wrapped black-box) and a :class:`~bastion.tabular.TabularData` (the
first ``config.limit`` records); the threat travels in ``ctx.extra["threat"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bastion.audit._modal import ModalInputs, run_modal_audit
from bastion.audit.config import AuditConfig
from bastion.audit.environment import tensor_sha256
from bastion.audit.report import AuditReport
from bastion.audit.sections.base import Progress, Section
from bastion.errors import DataError, ModelContractError, ThreatModelError
from bastion.tabular.data import TabularData
from bastion.tabular.threat import TabularThreatModel

__all__ = ["as_tabular_classifier", "run_tabular_audit"]


def as_tabular_classifier(model: Any, data: TabularData) -> Any:
    """``model`` if it is a tabular classifier (callable with ``schema`` and ``num_classes``), a fitted
    estimator with ``predict_proba`` wrapped as :class:`~bastion.tabular.SklearnTabularClassifier`."""
    from bastion.tabular.model import SklearnTabularClassifier

    if hasattr(model, "predict_proba") and not hasattr(model, "schema"):
        return SklearnTabularClassifier(model, data.schema)
    if callable(model) and hasattr(model, "schema") and hasattr(model, "num_classes"):
        return model
    raise ModelContractError(
        f"cannot audit a {type(model).__name__} as a tabular model: give a bastion.tabular classifier "
        "(train_mlp, TorchTabularClassifier, SklearnTabularClassifier) or a fitted estimator with "
        "predict_proba"
    )


def run_tabular_audit(
    model: Any,
    data: TabularData,
    config: AuditConfig | None = None,
    *,
    threat: TabularThreatModel | None = None,
    progress: Progress | None = None,
    model_name: str | None = None,
    sections: Sequence[Section] | None = None,
) -> AuditReport:
    """Audit a tabular model on ``data``'s first ``config.limit`` records under ``threat`` (default: the
    schema's own mutability and limits, :class:`TabularThreatModel(data.schema)`) with ``sections``
    (default :data:`bastion.audit.sections.TABULAR_SECTIONS`)."""
    from bastion.audit.sections import TABULAR_SECTIONS

    cfg = config or AuditConfig()
    clf = as_tabular_classifier(model, data)
    threat = threat if threat is not None else TabularThreatModel(data.schema)
    if not isinstance(threat, TabularThreatModel):
        raise ThreatModelError(f"a tabular audit needs a TabularThreatModel, got {type(threat).__name__}")
    if threat.schema.names != data.schema.names:
        raise ThreatModelError(
            f"the threat model's schema ({threat.schema.name}) has other features than the data's "
            f"({data.schema.name}); build the threat from the data's schema"
        )
    n = min(len(data), cfg.limit) if cfg.limit else len(data)
    if n == 0:
        raise DataError("the data set is empty; nothing to audit")
    x, y = data.x[:n], data.y[:n]
    with torch.no_grad():
        logits = torch.cat([clf(x[i : i + 4096]).float().cpu() for i in range(0, n, 4096)])
    inputs = ModalInputs(
        x=x,
        y=y.cpu(),
        logits=logits,
        name=Path(data.source).name if data.source else (data.schema.name or "records"),
        class_names=tuple(data.classes),
        n_available=len(data),
        sha256=tensor_sha256(x, y),
        input_shape=[int(x.shape[1])],
    )
    return run_modal_audit(
        clf, data, inputs, cfg, TABULAR_SECTIONS if sections is None else sections,
        modality="tabular", progress=progress, model_name=model_name, extra={"threat": threat},
    )  # fmt: skip
