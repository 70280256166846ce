"""``bastion audit --physical``: the physical-threats section through the command (in this process)."""

from __future__ import annotations

import json

import jsonschema
from cli_inproc import bastion

from bastion.audit.schema import report_schema
from bastion.audit.sections.physical import patch_file_name


def test_physical_flag_writes_the_section_and_the_patch_pngs(tmp_path):
    out = tmp_path / "report"
    res = bastion(
        "audit", "zoo:digits-cnn", "digits", "--limit", "40", "--preset", "fast", "--seed", "0", "--no-curve",
        "--physical", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr  # its findings are medium: they fail only --fail-on medium
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, report_schema())
    ph = data["physical"]
    assert ph["status"] == "measured" and data["config"]["physical"] is True
    html = (out / "report.html").read_text()
    for area in data["config"]["physical_patch_areas"]:
        assert (out / patch_file_name(area)).is_file() and patch_file_name(area) in html
    assert "spatial (worst of 10" in res.stdout and "Physical threats" in (out / "summary.md").read_text()


def test_without_the_flag_there_is_no_section_and_no_png(tmp_path):
    out = tmp_path / "report"
    res = bastion("audit", "zoo:digits-cnn", "digits", "--limit", "20", "--preset", "fast", "--no-curve",
                  "--no-checks", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "report.json").read_text())["physical"] is None
    assert not list(out.glob("*.png"))
