"""The JSON Schema of ``report.json``: the core keys (``schema.json``) plus each section's fragment.

``python -m bastion.audit.schema [image|text|tabular]`` prints the assembled schema of that modality's
default pipeline (image by default); :func:`schema_for_report` picks it from a report's ``model.modality``.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from bastion.audit.sections import SECTIONS, TABULAR_SECTIONS, TEXT_SECTIONS, Section, SectionError

__all__ = ["MODALITIES", "report_schema", "schema_for_report"]

MODALITIES: dict[str, tuple[Section, ...]] = {
    "image": SECTIONS,
    "text": TEXT_SECTIONS,
    "tabular": TABULAR_SECTIONS,
}


def report_schema(sections: Sequence[Section] | None = None, *, modality: str = "image") -> dict[str, Any]:
    """The schema a report of ``sections`` validates against (default: ``modality``'s default pipeline,
    ``image``, ``text`` or ``tabular``)."""
    if sections is None:
        if modality not in MODALITIES:
            raise SectionError(f"unknown modality {modality!r}; use one of: {', '.join(MODALITIES)}")
        sections = MODALITIES[modality]
    base = resources.files("bastion.audit").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(base)
    for section in sections:
        fragment = copy.deepcopy(section.schema())
        if section.name in schema["properties"]:
            raise SectionError(f"section {section.name!r} would replace the report's core key of that name")
        schema["properties"][section.name] = fragment["property"]
        for name, definition in fragment.get("defs", {}).items():
            if name in schema["$defs"] and schema["$defs"][name] != definition:
                raise SectionError(f"section {section.name!r} redefines the schema definition {name!r}")
            schema["$defs"][name] = definition
        if section.required_key:
            schema["required"].append(section.name)
    return schema


def schema_for_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The schema of the default pipeline of ``report``'s modality (``model.modality``; image before 1.5)."""
    model = report.get("model")
    modality = model.get("modality", "image") if isinstance(model, Mapping) else "image"
    return report_schema(modality=str(modality))


if __name__ == "__main__":
    try:
        schema = report_schema(modality=(sys.argv[1:] or ["image"])[0])
        print(json.dumps(schema, indent=2, ensure_ascii=False))
    except SectionError as exc:
        sys.exit(f"error: {exc}")
