"""The verdict and the one line that says what it gates on.

A bare PASS on a model that is 62% robust reads as "robust"; it only means that no finding reached
``--fail-on`` and that robust accuracy was not gated unless ``--min-robust-accuracy`` was set. So the
verdict carries ``gates`` (its rule, in words) and ``headline`` (PASS or FAIL with that rule), and every
renderer prints the headline: "PASS — no finding ≥ high; robust accuracy not gated (set
--min-robust-accuracy)".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.audit.findings import Finding, Severity

__all__ = ["gates", "headline", "verdict_block"]


def _robust_rule(min_robust_accuracy: float, passed: bool) -> str:
    if min_robust_accuracy <= 0:
        return "robust accuracy not gated (set --min-robust-accuracy)"
    at_least = f"{100 * min_robust_accuracy:.1f}%"
    return (
        f"robust accuracy ≥ {at_least} at every threat"
        if passed
        else f"robust accuracy gated at ≥ {at_least}"
    )


def gates(fail_on: str | Severity, min_robust_accuracy: float) -> str:
    """What a PASS requires, in words: ``no finding ≥ high; robust accuracy not gated (...)``."""
    return f"no finding ≥ {Severity.parse(fail_on)}; {_robust_rule(min_robust_accuracy, True)}"


def _headline(passed: bool, fail_on: str, failing: Sequence[str], min_robust_accuracy: float) -> str:
    if passed:
        return f"PASS — {gates(fail_on, min_robust_accuracy)}"
    codes = list(dict.fromkeys(failing))
    count = f"{len(failing)} finding{'s' if len(failing) != 1 else ''} ≥ {fail_on}"
    return f"FAIL — {count} ({', '.join(codes)}); {_robust_rule(min_robust_accuracy, False)}"


def verdict_block(
    findings: Sequence[Finding], *, fail_on: Severity, min_robust_accuracy: float, blocked: bool
) -> dict[str, Any]:
    """report.json's ``verdict``: ``passed``, ``fail_on``, ``failing_findings`` (codes, one per failing
    finding), ``blocked`` (the data stopped the audit before any attack), ``gates`` and ``headline``."""
    failing = [f.code for f in findings if f.severity >= fail_on]
    passed = not failing
    return {
        "passed": passed,
        "fail_on": str(fail_on),
        "failing_findings": failing,
        "blocked": blocked,
        "gates": gates(fail_on, min_robust_accuracy),
        "headline": _headline(passed, str(fail_on), failing, min_robust_accuracy),
    }


def headline(report: dict[str, Any]) -> str:
    """The verdict line of a report dict (``AuditReport.to_dict()`` or a report.json): its ``headline``,
    or for a report written before schema 1.3 the same line rebuilt from its verdict and config."""
    verdict = report["verdict"]
    if verdict.get("headline"):
        return str(verdict["headline"])
    minimum = float((report.get("config") or {}).get("min_robust_accuracy") or 0.0)
    return _headline(bool(verdict["passed"]), verdict["fail_on"], verdict["failing_findings"], minimum)
