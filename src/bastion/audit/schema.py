"""The JSON Schema of ``report.json``: the core keys (``schema.json``) plus each section's fragment.

``python -m bastion.audit.schema`` prints the assembled schema of the default pipeline.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from bastion.audit.sections import SECTIONS, Section, SectionError

__all__ = ["report_schema"]


def report_schema(sections: Sequence[Section] | None = None) -> dict[str, Any]:
    """The schema a report of ``sections`` (default: the default pipeline) validates against."""
    base = resources.files("bastion.audit").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(base)
    for section in SECTIONS if sections is None else sections:
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


if __name__ == "__main__":
    print(json.dumps(report_schema(), indent=2, ensure_ascii=False))
