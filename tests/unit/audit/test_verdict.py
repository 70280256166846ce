"""The verdict line says what it gates on."""

from __future__ import annotations

from bastion.audit.findings import Severity, finding
from bastion.audit.verdict import gates, headline, verdict_block

NOT_GATED = "robust accuracy not gated (set --min-robust-accuracy)"


def test_pass_says_robust_accuracy_is_not_gated():
    v = verdict_block([], fail_on=Severity.HIGH, min_robust_accuracy=0.0, blocked=False)
    assert v["passed"] and v["failing_findings"] == []
    assert v["gates"] == f"no finding ≥ high; {NOT_GATED}"
    assert v["headline"] == f"PASS — no finding ≥ high; {NOT_GATED}"


def test_gated_pass_and_fail():
    v = verdict_block([], fail_on=Severity.MEDIUM, min_robust_accuracy=0.5, blocked=False)
    assert v["headline"] == "PASS — no finding ≥ medium; robust accuracy ≥ 50.0% at every threat"
    found = [finding("BA301", "below", threat="linf ε=0.1"), finding("BA301", "below", threat="linf ε=0.2")]
    found.append(finding("BA107", "standardised"))  # medium: fails at medium
    v = verdict_block(found, fail_on=Severity.MEDIUM, min_robust_accuracy=0.5, blocked=False)
    assert not v["passed"] and v["failing_findings"] == ["BA301", "BA301", "BA107"]
    assert v["headline"] == "FAIL — 3 findings ≥ medium (BA301, BA107); robust accuracy gated at ≥ 50.0%"


def test_findings_below_fail_on_do_not_fail():
    v = verdict_block([finding("BA107", "x")], fail_on=Severity.HIGH, min_robust_accuracy=0.0, blocked=False)
    assert v["passed"] and v["headline"].startswith("PASS")
    one = verdict_block([finding("BA108", "x")], fail_on=Severity.HIGH, min_robust_accuracy=0.0, blocked=True)
    assert one["blocked"] and one["headline"] == f"FAIL — 1 finding ≥ high (BA108); {NOT_GATED}"


def test_headline_of_a_report_before_schema_1_3():
    old = {"verdict": {"passed": True, "fail_on": "high", "failing_findings": [], "blocked": False}}
    assert headline({**old, "config": {"min_robust_accuracy": 0.62}}) == (
        "PASS — no finding ≥ high; robust accuracy ≥ 62.0% at every threat"
    )
    assert headline(old) == f"PASS — {gates('high', 0.0)}"
