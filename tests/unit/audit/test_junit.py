"""JUnit XML output: one test case per check run, a failure for each failed check."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from bastion.audit.findings import CATALOG, Severity, finding
from bastion.audit.junit import to_junit, write_junit
from bastion.audit.verdict import verdict_block


def report(findings: list[Any], checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema_version": "1.3",
        "created": "2026-12-06T01:00:00+00:00",
        "verdict": verdict_block(findings, fail_on=Severity.HIGH, min_robust_accuracy=0.0, blocked=False),
        "findings": [f.to_dict() for f in findings],
        "model": {"name": "zoo:digits-mlp"},
        "data": {"name": "digits-test"},
        "config": {"min_robust_accuracy": 0.0},
        "checks": checks,
        "timing": {"seconds": 12.5},
    }


def row(code: str, threat: str, passed: bool, **measured: Any) -> dict[str, Any]:
    return {"code": code, "threat": threat, "passed": passed, "measured": measured}


CHECKS = [
    row("BA106", "data", True),
    row("BA107", "data", False),  # its finding has no threat: matched by code
    row("BA205", "linf ε=0.1", False, fooled=3),
    row("BA205", "linf ε=0.2", True, fooled=0),
    row("BA301", "all", True, minimum=0.0),
]
FINDINGS = [
    finding("BA107", 'per-channel means look standardised <&> "quoted"'),
    finding("BA205", "Square fooled 3 of 10", threat="linf ε=0.1", fooled=3),
    finding("BA108", "4 of 40 clean inputs correct"),  # no check row: still a failed test case
]


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    return root


def test_one_case_per_check_and_failures_for_failed_ones():
    root = parse(to_junit(report(FINDINGS, CHECKS)))
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(CHECKS) + 1  # + the finding no check row accounts for
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("classname") for c in failed] == [
        "bastion.audit.BA107",
        "bastion.audit.BA205",
        "bastion.audit.BA108",
    ]
    for node in (root, suite):
        assert (
            node.get("tests") == str(len(cases)) and node.get("failures") == "3" and node.get("errors") == "0"
        )
    passed = [c for c in cases if c.find("failure") is None]
    assert passed[0].get("name") == f"BA106 {CATALOG['BA106'].holds} [data]"
    assert suite.get("time") == "12.500"


def test_failure_says_severity_detail_and_ids():
    suite = parse(to_junit(report(FINDINGS, CHECKS))).find("testsuite")
    assert suite is not None
    case = next(c for c in suite.findall("testcase") if c.get("name", "").startswith("BA205"))
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith(
        "HIGH BA205 black-box attack beats white-box attacks: Square"
    )
    assert "AML.T0043.001" in (failure.text or "") and "ML01" in (failure.text or "")
    quoted = next(c for c in suite.findall("testcase") if c.get("name", "").startswith("BA107")).find(
        "failure"
    )
    assert quoted is not None and '<&> "quoted"' in quoted.get("message", "")  # escaped, parsed back


def test_verdict_in_properties_and_a_clean_run(tmp_path):
    root = parse(to_junit(report([], [row("BA106", "data", True)])))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["passed"] == "true"
    assert (
        props["verdict"] == "PASS — no finding ≥ high; robust accuracy not gated (set --min-robust-accuracy)"
    )
    assert root.get("failures") == "0" and root.get("tests") == "1"
    path = write_junit(report(FINDINGS, CHECKS), tmp_path / "junit.xml")
    assert parse(path.read_text(encoding="utf-8")).get("failures") == "3"
