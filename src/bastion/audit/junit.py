"""The audit as a JUnit XML file, for CI systems' test reports (``bastion audit --junit FILE``).

A pure function of the report dict (``AuditReport.to_dict()`` or a report.json): one ``testcase`` per
check the audit ran (report.json's ``checks``), named by its code, what must hold and the threat; a failed
check carries a ``failure`` with the finding's severity, detail, meaning and what to do. A finding that no
check row accounts for still appears, as a failed test case of its own, so no finding is lost. Failures
are listed whatever their severity; the verdict (which only fails at ``--fail-on``) is in the suite's
properties and in the exit code.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bastion._files import atomic_write
from bastion.audit.findings import CATALOG
from bastion.audit.report import AuditReport
from bastion.audit.verdict import headline

__all__ = ["to_junit", "write_junit"]


def _case_name(code: str, threat: str) -> str:
    check = CATALOG.get(code)
    what = check.holds if check and check.holds else (check.title if check else code)
    return f"{code} {what}" + (f" [{threat}]" if threat else "")


def _take(unused: list[dict[str, Any]], code: str, threat: str) -> dict[str, Any] | None:
    """The finding behind a failed check row: same code and threat, else the first of that code (the
    data pre-checks' rows say "data" where their findings have no threat)."""
    same = [f for f in unused if f["code"] == code]
    match = next((f for f in same if f["threat"] == threat), same[0] if same else None)
    if match is not None:
        unused.remove(match)
    return match


def _failure(case: ET.Element, f: dict[str, Any] | None, code: str) -> None:
    if f is None:  # a failed check whose finding is missing: say so rather than invent one
        check = CATALOG.get(code)
        ET.SubElement(case, "failure", message=check.title if check else code, type=code)
        return
    message = f"{f['severity'].upper()} {f['code']} {f['title']}: {f['detail']}"
    node = ET.SubElement(case, "failure", message=message, type=f"{f['code']} ({f['severity']})")
    ids = ", ".join([*f.get("atlas", []), *f.get("owasp", [])])
    node.text = (
        f"{f['detail']}\n\nWhat it means: {f['meaning']}\n\nWhat to do: {f['action']}"
        + (f"\n\nMITRE ATLAS / OWASP ML: {ids}" if ids else "")
        + (f"\n\nEvidence: {f['evidence']}" if f.get("evidence") else "")
    )


def to_junit(report: AuditReport | dict[str, Any]) -> str:
    """The JUnit XML document (``testsuites`` > one ``testsuite``) of ``report``."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    unused = list(data["findings"])
    suite_name = f"bastion audit: {data['model']['name']} on {data['data']['name']}"
    seconds = f"{float((data.get('timing') or {}).get('seconds', 0.0)):.3f}"
    root = ET.Element("testsuites", name="bastion audit", time=seconds)
    suite = ET.SubElement(root, "testsuite", name=suite_name, time=seconds)
    if data.get("created"):
        suite.set("timestamp", str(data["created"]))
    props = ET.SubElement(suite, "properties")
    verdict = data["verdict"]
    for name, value in (
        ("verdict", headline(data)),
        ("passed", str(bool(verdict["passed"])).lower()),
        ("fail_on", verdict["fail_on"]),
        ("schema_version", data.get("schema_version", "")),
    ):
        ET.SubElement(props, "property", name=name, value=str(value))
    tests = failures = 0
    for row in data["checks"]:
        code = row["code"]
        case = ET.SubElement(
            suite, "testcase", classname=f"bastion.audit.{code}", name=_case_name(code, row["threat"])
        )
        tests += 1
        if not row["passed"]:
            failures += 1
            _failure(case, _take(unused, code, row["threat"]), code)
        if row.get("measured"):
            ET.SubElement(case, "system-out").text = f"measured: {row['measured']}"
    for f in unused:
        case = ET.SubElement(
            suite, "testcase", classname=f"bastion.audit.{f['code']}", name=_case_name(f["code"], f["threat"])
        )
        tests += 1
        failures += 1
        _failure(case, f, f["code"])
    for node in (root, suite):
        node.set("tests", str(tests))
        node.set("failures", str(failures))
        node.set("errors", "0")
    suite.set("skipped", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: AuditReport | dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`to_junit` to ``path`` atomically."""
    out = Path(path).expanduser()
    text = to_junit(report)
    atomic_write(out, lambda fh: fh.write(text))
    return out
