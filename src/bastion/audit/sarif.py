"""The audit as SARIF 2.1.0, for code-scanning dashboards (``bastion audit --sarif FILE``).

A pure function of the report dict (``AuditReport.to_dict()`` or a report.json), so it keeps working
whatever sections produced the findings: one rule per catalogued finding code (``docs/checks.md``), one
result per finding. Each rule names its MITRE ATLAS techniques and OWASP ML Top 10 items twice: as SARIF
taxonomy relationships (the standard's way) and as ``external/...`` tags with a ``security-severity``
(what GitHub code scanning reads).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion._files import atomic_write
from bastion.audit.findings import CATALOG, Check, Severity
from bastion.audit.report import AuditReport
from bastion.audit.taxonomy import ATLAS, ATLAS_VERSION, OWASP_ML, OWASP_ML_VERSION, atlas_url, owasp_url
from bastion.audit.verdict import headline

__all__ = ["SARIF_SCHEMA", "to_sarif", "write_sarif"]

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_ATLAS = "MITRE ATLAS"
_OWASP = "OWASP ML Top 10"
_LEVEL = {Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note"}
# GitHub ranks security results by this 0-10 score: high >= 7, medium 4-6.9, low < 4.
_SCORE = {Severity.HIGH: "8.0", Severity.MEDIUM: "5.0", Severity.LOW: "2.0"}


def _rule_name(title: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", title))


def _rule(check: Check) -> dict[str, Any]:
    refs = [(_ATLAS, t, ATLAS[t], atlas_url(t)) for t in check.atlas]
    refs += [(_OWASP, o, OWASP_ML[o], owasp_url(o)) for o in check.owasp]
    links = "; ".join(f"[{i}]({url}) {name}" for _, i, name, url in refs)
    return {
        "id": check.code,
        "name": _rule_name(check.title),
        "shortDescription": {"text": check.title},
        "fullDescription": {"text": check.meaning},
        "help": {
            "text": f"{check.action} (MITRE ATLAS: {', '.join(check.atlas)}; "
            f"OWASP ML: {', '.join(check.owasp)})",
            "markdown": f"**What it means.** {check.meaning}\n\n**What to do.** {check.action}\n\n{links}",
        },
        "defaultConfiguration": {"level": _LEVEL[check.severity]},
        "relationships": [
            {"target": {"id": i, "toolComponent": {"name": component}}, "kinds": ["relevant"]}
            for component, i, _, _ in refs
        ],
        "properties": {
            "tags": [
                "security",
                *(f"external/atlas/{t}" for t in check.atlas),
                *(f"external/owasp-ml/{o}" for o in check.owasp),
            ],
            "security-severity": _SCORE[check.severity],
            "severity": str(check.severity),
        },
    }


def _taxonomy(
    name: str, version: str, uri: str, org: str, taxa: dict[str, str], url: Callable[[str], str]
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "organization": org,
        "informationUri": uri,
        "shortDescription": {"text": f"{name} ({version})"},
        "taxa": [{"id": i, "name": n, "helpUri": url(i)} for i, n in taxa.items()],
    }


def _artifact(report: dict[str, Any]) -> str:
    """The audited artifact as a URI reference: the weights file, the factory's file, the TorchScript
    archive, or the model's spec (``zoo:NAME``) when there is no file."""
    model = report["model"]
    source = model.get("source") or {}
    spec = source.get("spec") or model["name"]
    path = source.get("weights_file")
    if not path:
        file, sep, _ = spec.rpartition(":")  # FILE.py:factory names its file; package.module:factory none
        path = (
            file if sep and file.endswith(".py") else (spec if source.get("kind") == "torchscript" else None)
        )
    target = Path(path).as_posix() if path else spec
    return quote(target, safe="/:@._-~")


def _result(f: dict[str, Any], index: dict[str, int], uri: str, report: dict[str, Any]) -> dict[str, Any]:
    where = f["threat"] or "model"
    check = CATALOG.get(f["code"])
    key = "|".join((f["code"], f["threat"], report["model"]["name"], report["data"]["name"]))
    level = _LEVEL[Severity.parse(f["severity"])]
    result: dict[str, Any] = {
        "ruleId": f["code"],
        "level": level,
        "message": {"text": f"{f['title']}{' at ' + f['threat'] if f['threat'] else ''}: {f['detail']}."},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {"uri": uri}},
                "logicalLocations": [
                    {"name": where, "fullyQualifiedName": f"{report['model']['name']}/{where}"}
                ],
            }
        ],
        "partialFingerprints": {"bastionFinding/v1": hashlib.sha256(key.encode()).hexdigest()[:32]},
        "properties": {
            "severity": f["severity"],
            "threat": f["threat"],
            "evidence": f.get("evidence", {}),
            # reports before schema 1.3 lack the IDs on findings: the catalogue has them
            "atlas": list(f.get("atlas") or (check.atlas if check else ())),
            "owasp": list(f.get("owasp") or (check.owasp if check else ())),
        },
    }
    if f["code"] in index:
        result["ruleIndex"] = index[f["code"]]
    return result


def to_sarif(report: AuditReport | dict[str, Any]) -> dict[str, Any]:
    """A SARIF 2.1.0 log (one run) of ``report``: every catalogued code as a rule, one result per finding,
    the verdict and headline numbers in the run's and the invocation's properties."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    checks = list(CATALOG.values())
    index = {c.code: i for i, c in enumerate(checks)}
    version = (data.get("environment") or {}).get("bastion") or "dev"
    uri = _artifact(data)
    passed = bool(data["verdict"]["passed"])
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bastion",
                        "fullName": "bastion audit (adversarial robustness red-team)",
                        "version": str(version),
                        "rules": [_rule(c) for c in checks],
                        "supportedTaxonomies": [{"name": _ATLAS}, {"name": _OWASP}],
                    }
                },
                "taxonomies": [
                    _taxonomy(_ATLAS, ATLAS_VERSION, "https://atlas.mitre.org", "MITRE", ATLAS, atlas_url),
                    _taxonomy(
                        _OWASP,
                        OWASP_ML_VERSION,
                        "https://owasp.org/www-project-machine-learning-security-top-10/",
                        "OWASP",
                        OWASP_ML,
                        owasp_url,
                    ),
                ],
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "exitCode": 0 if passed else 1,
                        **({"endTimeUtc": data["created"]} if data.get("created") else {}),
                        "properties": {"verdict": headline(data)},
                    }
                ],
                "results": [_result(f, index, uri, data) for f in data["findings"]],
                "properties": {
                    "verdict": {**data["verdict"], "headline": headline(data)},
                    "model": data["model"]["name"],
                    "data": data["data"]["name"],
                    "n_samples": data["data"].get("n_samples"),
                    "clean_accuracy": (data.get("clean") or {}).get("accuracy"),
                    "threats": [
                        {"label": t["label"], "robust_accuracy": t["robust_accuracy"]}
                        for t in data.get("threats") or []
                    ],
                },
            }
        ],
    }


def write_sarif(report: AuditReport | dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`to_sarif` to ``path`` atomically (a reader never sees half a file)."""
    out = Path(path).expanduser()
    text = json.dumps(to_sarif(report), indent=2, allow_nan=False) + "\n"
    atomic_write(out, lambda fh: fh.write(text))
    return out
