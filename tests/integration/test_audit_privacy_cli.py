"""``bastion audit --privacy``: the privacy section end to end (the command run in-process)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from cli_inproc import bastion

from bastion.audit.report import SCHEMA_VERSION
from bastion.audit.schema import report_schema

SMALL = ["--limit", "60", "--preset", "fast", "--seed", "0", "--no-curve", "--no-checks"]


@pytest.fixture(scope="module")
def privacy_report(tmp_path_factory) -> tuple[int, str, Path]:
    """One audit with extraction and membership (RMIA's two references included): ~20 s on 2 cores."""
    tmp = tmp_path_factory.mktemp("privacy")
    config = tmp / "audit.toml"
    config.write_text("privacy_clone_steps = 60\nprivacy_samples = 60\n")  # small clones: a quicker test
    out = tmp / "report"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # tiny models: one thread beats two on a shared 2-core machine
        res = bastion(
            "audit", "zoo:digits-cnn", "digits", *SMALL, "--config", str(config),
            "--privacy", "extraction,membership", "--training-data", "digits", "--privacy-budget", "20,40",
            "--out", str(out), "--junit", str(tmp / "junit.xml"), "--sarif", str(tmp / "audit.sarif"),
        )  # fmt: skip
    return res.returncode, res.stdout + res.stderr, out


def test_the_report_holds_the_privacy_block(privacy_report):
    code, text, out = privacy_report
    assert code in (0, 1), text  # 1: a finding at --fail-on (BA501 is likely on an in-distribution pool)
    data = json.loads((out / "report.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(data, report_schema())
    block = data["privacy"]
    assert block["methods"] == ["extraction", "membership"] and block["output_policy"] == "probs"
    assert block["inversion"] is None and block["training_data"] == "digits"
    ex = block["extraction"]
    assert ex["pool_kind"] == "in-distribution pool, worst case" and ex["budgets"] == [20, 40]
    assert [r["output"] for r in ex["runs"]] == ["probs", "labels"]
    mi = block["membership"]
    assert mi["n_members"] == mi["n_non_members"] == 60
    assert [a["attack"] for a in mi["attacks"]] == ["threshold", "rmia"] and mi["references"] == 2
    assert data["config"]["privacy"] == ["extraction", "membership"]
    codes = {c["code"] for c in data["checks"]}
    assert {"BA501", "BA502"} <= codes
    for f in data["findings"]:
        if f["code"] == "BA501":
            assert "fidelity" in f["detail"] and "ML05" in f["owasp"]
    assert "extraction (probs): clone fidelity" in text and "membership (threshold, probs): AUC" in text


def test_html_junit_and_sarif_carry_it(privacy_report):
    _, _, out = privacy_report
    html = (out / "report.html").read_text()
    assert "Privacy: what the model" in html and "Knockoff" in html and "Membership inference" in html
    assert 'alt="clone fidelity against queries"' in html and 'alt="membership ROC, log-log"' in html
    cases = {c.get("name", "") for c in ET.parse(out.parent / "junit.xml").getroot().iter("testcase")}
    assert any("BA501" in c for c in cases) and any("BA502" in c for c in cases)
    sarif = json.loads((out.parent / "audit.sarif").read_text())
    assert sarif["version"] == "2.1.0"


def test_report_compare_shows_the_leaks(privacy_report, tmp_path):
    _, _, out = privacy_report
    res = bastion(
        "report",
        "compare",
        str(out / "report.json"),
        str(out / "report.json"),
        "--json",
        str(tmp_path / "c.json"),
    )
    assert res.returncode == 0, res.stderr
    metrics = [m["metric"] for m in json.loads((tmp_path / "c.json").read_text())["metrics"]]
    assert any("clone fidelity (probs" in m for m in metrics) and any(
        "membership AUC (rmia)" in m for m in metrics
    )


def test_membership_without_training_data_is_a_one_line_usage_error(tmp_path):
    res = bastion(
        "audit", "zoo:digits-cnn", "digits", *SMALL, "--privacy", "membership", "--out", str(tmp_path / "r")
    )
    assert res.returncode == 2
    message = res.stderr.strip()
    assert "--training-data" in message and len(message.splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()
