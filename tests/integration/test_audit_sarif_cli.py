"""``bastion audit --sarif/--junit`` and the verdict line (the command run in-process)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_inproc import bastion

from bastion.audit.findings import CATALOG

SMALL = ["--limit", "40", "--preset", "fast", "--seed", "0", "--no-curve"]

MASKED_FACTORY = """
import torch
from bastion import zoo


class Quantised(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 7) / 7)


def make():
    return Quantised(zoo.load("digits-mlp").module)
"""


@pytest.fixture(scope="module")
def masked(tmp_path_factory) -> tuple[int, str, Path]:
    """A gradient-masking model (findings of several codes), audited with both extra outputs."""
    tmp = tmp_path_factory.mktemp("sarif")
    (tmp / "masked.py").write_text(MASKED_FACTORY)
    res = bastion(
        "audit", f"{tmp / 'masked.py'}:make", "digits", *SMALL, "--out", str(tmp / "report"),
        "--sarif", str(tmp / "audit.sarif"), "--junit", str(tmp / "junit.xml"),
    )  # fmt: skip
    return res.returncode, res.stdout, tmp


def test_sarif_has_one_result_per_finding(masked):
    code, stdout, tmp = masked
    assert code == 1, stdout
    report = json.loads((tmp / "report" / "report.json").read_text())
    log = json.loads((tmp / "audit.sarif").read_text())
    assert log["version"] == "2.1.0" and len(log["runs"]) == 1
    run = log["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == list(CATALOG)
    assert [(r["ruleId"], r["message"]["text"]) for r in run["results"]] == [
        (f["code"], f"{f['title']}{' at ' + f['threat'] if f['threat'] else ''}: {f['detail']}.")
        for f in report["findings"]
    ]
    assert {r["ruleId"] for r in run["results"]} >= {"BA103"}  # the quantiser hides the gradient
    for result in run["results"]:
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.endswith("masked.py:make") or uri.endswith("masked.py")
    assert run["invocations"][0]["exitCode"] == 1
    assert "SARIF" in stdout and "JUnit" in stdout


def test_junit_has_one_case_per_check(masked):
    _, _, tmp = masked
    report = json.loads((tmp / "report" / "report.json").read_text())
    suite = ET.parse(tmp / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    failed_rows = [c for c in report["checks"] if not c["passed"]]
    assert len(cases) >= len(report["checks"])
    assert [c.get("classname") for c in cases[: len(report["checks"])]] == [
        f"bastion.audit.{c['code']}" for c in report["checks"]
    ]
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures", "-1")) == len(failures) >= len(failed_rows) > 0


def test_verdict_line_says_what_it_gates_on(masked, tmp_path):
    _, stdout, _ = masked
    assert "verdict: FAIL — " in stdout and "≥ high (" in stdout
    res = bastion("audit", "zoo:digits-mlp", "digits", *SMALL, "--out", str(tmp_path / "ok"))
    assert res.returncode == 0, res.stderr
    assert (
        "verdict: PASS — no finding ≥ high; robust accuracy not gated (set --min-robust-accuracy)"
        in res.stdout
    )


def test_report_json_html_and_summary_carry_the_ids_and_the_verdict_line(masked):
    _, _, tmp = masked
    report = json.loads((tmp / "report" / "report.json").read_text())
    assert report["findings"]
    for f in report["findings"]:
        assert f["atlas"] == list(CATALOG[f["code"]].atlas) and f["owasp"] == list(CATALOG[f["code"]].owasp)
    html = (tmp / "report" / "report.html").read_text()
    for f in report["findings"]:
        for technique in f["atlas"]:
            assert f'href="https://atlas.mitre.org/techniques/{technique}"' in html
    assert "OWASP ML Top 10:" in html and "≥ high (" in html
    summary = (tmp / "report" / "summary.md").read_text()
    assert summary.startswith("## bastion audit: ❌ FAIL — ")
    assert "(ATLAS AML.T0015" in summary
