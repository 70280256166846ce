"""The section contract: what every part of the audit implements, and the context they share.

A section takes its slice of the :class:`~bastion.audit.config.AuditConfig` and a shared
:class:`AuditContext` (model, data, seed, clock, progress, and the *declared* outputs of earlier
sections) and returns a :class:`SectionResult`: its report block, its findings, the checks it ran and the
outputs it declared. Its HTML partial lives in ``templates/sections/<template>``, its JSON-schema
fragment in ``sections/schema/<name>.json``. A section never reads another section's block: what it
needs from an earlier one is named in ``requires`` and handed over through ``AuditContext.outputs``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import torch

from bastion.audit.config import AuditConfig
from bastion.audit.findings import Finding
from bastion.audit.probes import Clock
from bastion.data.dataset import Dataset
from bastion.errors import BastionError
from bastion.model import Classifier

__all__ = [
    "AuditContext",
    "CheckRun",
    "HeadlineRow",
    "MetricRow",
    "Progress",
    "Section",
    "SectionError",
    "SectionResult",
    "check",
    "validate_pipeline",
]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(task, done, total)``; ``total`` is the number of inputs the task attacks."""

AuditModel = Classifier | Any
"""An image :class:`~bastion.model.Classifier`, a text or a tabular classifier (see :class:`AuditContext`)."""
AuditData = Dataset | Any
AuditInputs = torch.Tensor | Any

MetricRow = tuple[str, float | None, float | None]
"""``(metric, old, new)`` for ``report compare``: higher is better."""


@dataclass(frozen=True)
class CheckRun:
    """One check a section ran (passed or not), for the report's ``checks`` list and the JUnit file."""

    code: str
    threat: str
    passed: bool
    measured: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        measured = dict(self.measured)
        return {"code": self.code, "threat": self.threat, "passed": self.passed, "measured": measured}


def check(code: str, threat: str, passed: bool, **measured: Any) -> CheckRun:
    """A :class:`CheckRun` with its measurements as keywords."""
    return CheckRun(code, threat, passed, measured)


@dataclass(frozen=True)
class SectionResult:
    """What a section returns. ``block`` is JSON-ready (it goes into report.json under the section's
    name); ``outputs`` holds the values the section declared in ``provides`` (tensors allowed, never
    serialised); ``artifacts`` holds what only its HTML partial draws (example images, triggers)."""

    block: Any
    findings: tuple[Finding, ...] = ()
    checks: tuple[CheckRun, ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class AuditContext:
    """What every section sees. ``model`` is what the attacks attack (behind ``--defense`` when one is
    configured); ``network`` the bare model (weights-level scans look at it). ``x`` (N, ...) and ``y`` (N,)
    are the audited inputs, ``correct`` (N,) bool the clean predictions' correctness.

    The modality decides the types (:data:`AuditModel`, :data:`AuditData`, :data:`AuditInputs`): images
    a :class:`~bastion.model.Classifier`, a :class:`~bastion.data.dataset.Dataset` and a tensor ``x``;
    text a :class:`~bastion.text.TextClassifier`, :class:`~bastion.text.TextData` and ``x`` a list of N
    strings; tabular a :class:`~bastion.tabular.TabularClassifier`, :class:`~bastion.tabular.TabularData`
    and records ``x`` (N, D). ``extra`` holds what only one modality has (the tabular threat model)."""

    model: AuditModel
    network: AuditModel
    data: AuditData
    x: AuditInputs
    y: torch.Tensor
    clean_logits: torch.Tensor
    correct: torch.Tensor
    config: AuditConfig
    clock: Clock
    progress: Progress
    source: dict[str, Any] = field(default_factory=dict)
    """How the model was loaded and where its bounds came from (report.json's ``model.source``)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    preparations: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.config.seed

    def output(self, name: str) -> Any:
        """A value an earlier section declared in ``provides``; a KeyError names the missing one."""
        if name not in self.outputs:
            raise KeyError(f"no earlier section provides {name!r}; declare it in a section's provides")
        return self.outputs[name]

    def prepared(self, section: str) -> Any:
        """What ``section``'s :meth:`Section.prepare` returned before any section ran."""
        return self.preparations.get(section)


@dataclass(frozen=True)
class HeadlineRow:
    """A robust accuracy a section declares under ``adversarials`` without an image threat model (a text
    preset, a tabular threat): what the ``BA301`` gate reads (``label``, ``robust_accuracy``)."""

    label: str
    robust_accuracy: float


class Section(ABC):
    """One part of the audit. Subclasses set ``name`` (its report.json key), ``requires``/``provides``
    (declared outputs), ``template`` (its HTML partial, or None) and implement :meth:`run`."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    template: ClassVar[str | None] = None
    required_key: ClassVar[bool] = False
    """Whether report.json always holds the key (otherwise it is null when the section is off)."""

    def enabled(self, config: AuditConfig) -> bool:
        """Whether ``config`` asks for this section; a disabled section's block is :meth:`off`."""
        return True

    def off(self, config: AuditConfig) -> Any:
        """The block of a section that did not run (null by default)."""
        return None

    def prepare(self, config: AuditConfig) -> Any:
        """Load what the section needs (files named in the config) before any section runs, so a wrong
        path fails the audit at once; the value reaches :meth:`run` as ``ctx.prepared(name)``."""
        return None

    @abstractmethod
    def run(self, ctx: AuditContext) -> SectionResult:
        """Do the section's work. Raise only for errors the user must fix; record refusals in the block."""

    def schema(self) -> dict[str, Any]:
        """The JSON-schema fragment of this section's block (``sections/schema/<name>.json``):
        ``{"property": {...}, "defs": {...}}``."""
        return _fragment(self.name)

    def figures(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, Any]:
        """Inline images (data URIs) its HTML partial shows, from the report's JSON and its artifacts."""
        return {}

    def files(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, bytes]:
        """Files :func:`~bastion.audit.render.write_report` writes beside report.html (a plain file name ->
        its bytes), e.g. an image the report links to; none by default."""
        return {}

    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[MetricRow]:
        """Rows for ``report compare`` from two reports' JSON (higher is better); none by default."""
        return []


class SectionError(BastionError):
    """A list of sections breaks the contract (a duplicate name, an output nobody provides)."""


@cache
def _fragment(name: str) -> dict[str, Any]:
    path = resources.files("bastion.audit.sections").joinpath("schema", f"{name}.json")
    fragment: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return fragment


def validate_pipeline(sections: tuple[Section, ...] | list[Section]) -> None:
    """Refuse a pipeline whose names repeat or whose sections read an output no earlier one provides."""
    seen: set[str] = set()
    provided: set[str] = set()
    for section in sections:
        if section.name in seen:
            raise SectionError(f"two sections are named {section.name!r}; each names its own report key")
        missing = [r for r in section.requires if r not in provided]
        if missing:
            raise SectionError(
                f"section {section.name!r} requires {', '.join(map(repr, missing))}, which no earlier "
                "section provides; put the section after the one that provides it"
            )
        seen.add(section.name)
        provided.update(section.provides)
