"""The audit as a pipeline of sections (:class:`~bastion.audit.sections.base.Section`).

:data:`SECTIONS` is the default pipeline, in run order. A new threat family is one new module here and
one line in this list; :func:`bastion.audit.run_audit` takes another list through ``sections=``.
Text and tabular models have their own pipelines, :data:`TEXT_SECTIONS` and :data:`TABULAR_SECTIONS`,
chosen by the data ``run_audit`` is given.
"""

from __future__ import annotations

from bastion.audit.sections.base import (
    AuditContext,
    CheckRun,
    Section,
    SectionError,
    SectionResult,
    check,
    validate_pipeline,
)
from bastion.audit.sections.certification import CertificationSection
from bastion.audit.sections.curves import CurveSection
from bastion.audit.sections.detector import DetectorSection
from bastion.audit.sections.evasion import AuditedThreat, EvasionSection
from bastion.audit.sections.physical import PhysicalSection
from bastion.audit.sections.prechecks import PrechecksSection
from bastion.audit.sections.privacy import PrivacySection
from bastion.audit.sections.tabular import TabularSection
from bastion.audit.sections.text import TextSection
from bastion.audit.sections.training import TrainingSection

__all__ = [
    "SECTIONS",
    "TABULAR_SECTIONS",
    "TEXT_SECTIONS",
    "AuditContext",
    "AuditedThreat",
    "CheckRun",
    "PhysicalSection",
    "Section",
    "SectionError",
    "SectionResult",
    "TabularSection",
    "TextSection",
    "check",
    "validate_pipeline",
]

SECTIONS: tuple[Section, ...] = (
    PrechecksSection(),
    EvasionSection(),
    DetectorSection(),
    CertificationSection(),
    CurveSection(),
    PhysicalSection(),
    TrainingSection(),
    PrivacySection(),
)

TEXT_SECTIONS: tuple[Section, ...] = (TextSection(),)
"""The text audit's pipeline: a text classifier on labelled texts."""
TABULAR_SECTIONS: tuple[Section, ...] = (TabularSection(),)
"""The tabular audit's pipeline: a tabular classifier on records, under a tabular threat model."""
