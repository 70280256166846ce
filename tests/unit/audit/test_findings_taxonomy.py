"""Every finding code speaks the security team's language: MITRE ATLAS techniques and OWASP ML Top 10 IDs,
on the catalogue, in report.json's findings and in docs/checks.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bastion.audit.findings import CATALOG, finding
from bastion.audit.taxonomy import ATLAS, OWASP_ML, atlas_url, owasp_url

DOC = Path(__file__).parents[3] / "docs" / "checks.md"
ATLAS_ID = re.compile(r"^AML\.T\d{4}(\.\d{3})?$")


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_every_code_has_atlas_and_owasp_ids(code):
    check = CATALOG[code]
    assert check.atlas, f"{code} names no MITRE ATLAS technique"
    assert check.owasp, f"{code} names no OWASP ML Top 10 item"
    for technique in check.atlas:
        assert ATLAS_ID.match(technique), technique
        assert technique in ATLAS, f"{code}: {technique} has no name in bastion.audit.taxonomy.ATLAS"
    for item in check.owasp:
        assert item in OWASP_ML, f"{code}: {item} is not an OWASP ML Top 10 (2023) ID"
    assert len(set(check.atlas)) == len(check.atlas) and len(set(check.owasp)) == len(check.owasp)


def test_sub_techniques_have_their_parent_named():
    # AML.T0043.000 is a sub-technique of AML.T0043: its name starts with the parent's
    for technique, name in ATLAS.items():
        parent = technique.rsplit(".", 1)[0] if technique.count(".") == 2 else None
        if parent and parent in ATLAS:
            assert name.startswith(ATLAS[parent] + ": "), technique


def test_owasp_list_is_the_2023_top_ten():
    assert list(OWASP_ML) == [f"ML{i:02d}" for i in range(1, 11)]
    assert OWASP_ML["ML01"] == "Input Manipulation Attack" and OWASP_ML["ML10"] == "Model Poisoning"


def test_urls():
    assert atlas_url("AML.T0043.000") == "https://atlas.mitre.org/techniques/AML.T0043.000"
    assert owasp_url("ML01").endswith("/docs/ML01_2023-Input_Manipulation_Attack")


def test_findings_carry_the_ids_into_report_json():
    f = finding("BA401", "class 3 stands out", anomaly_index=4.2)
    d = f.to_dict()
    assert d["atlas"] == list(CATALOG["BA401"].atlas) and d["owasp"] == list(CATALOG["BA401"].owasp)
    assert "ML10" in d["owasp"] and "AML.T0020" in d["atlas"]


def test_evasion_and_poisoning_codes_map_where_they_belong():
    # the attack-quality checks are evidence about evasion; the training-time ones about poisoning
    for code in (c for c in CATALOG if c.startswith("BA2")):
        assert "AML.T0015" in CATALOG[code].atlas and "ML01" in CATALOG[code].owasp, code
    for code in ("BA401", "BA402", "BA403", "BA404"):
        assert "AML.T0020" in CATALOG[code].atlas and "ML02" in CATALOG[code].owasp, code


def _section(doc: str, code: str) -> str:
    start = doc.index(f"## `{code}`")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else len(doc)]


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_docs_list_every_code_with_its_ids(code):
    doc = DOC.read_text(encoding="utf-8")
    row = next((line for line in doc.splitlines() if line.startswith(f"| `{code}` |")), None)
    assert row is not None, f"{code} has no row in docs/checks.md's table"
    section = _section(doc, code)
    for ident in (*CATALOG[code].atlas, *CATALOG[code].owasp):
        assert ident in row, f"docs/checks.md's table row for {code} lacks {ident}"
        assert ident in section, f"docs/checks.md's section on {code} lacks {ident}"
