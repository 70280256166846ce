"""The audit's privacy section: off unless asked, its block against the schema, BA501-BA503 and their
checks, membership leakage found on a memorising model and not on one independent of the "members", the
training data membership needs, ``report compare`` rows, the HTML partial."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import jsonschema
import numpy as np
import pytest
import torch
from torch import nn

from bastion.audit import AuditConfig, ConfigError, load_config, run_audit
from bastion.audit.findings import CATALOG
from bastion.audit.junit import write_junit
from bastion.audit.render import render_html
from bastion.audit.schema import report_schema
from bastion.audit.sections import SECTIONS
from bastion.audit.sections.prechecks import PrechecksSection
from bastion.audit.sections.privacy import PrivacySection, binomial_tail, privacy_lines
from bastion.data.dataset import Dataset
from bastion.model import TorchClassifier

# Prechecks provide "blocked"; the evasion sections are not needed to test this one (and cost seconds).
PIPELINE = (PrechecksSection(), PrivacySection())
BASE = AuditConfig(preset="fast", limit=120, checks=False, curve=False, transfer=False)
SCHEMA = report_schema(PIPELINE)


def _dataset(x: torch.Tensor, y: torch.Tensor, name: str) -> Dataset:
    return Dataset(x, y, 10, (0.0, 1.0), tuple(str(i) for i in range(10)), name)


def _npz(path, x: torch.Tensor, y: torch.Tensor) -> str:
    np.savez(path, x=x.numpy(), y=y.numpy())
    return f"npz:{path}"


def _valid(report) -> dict:
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    jsonschema.validate(data, SCHEMA)
    return data


def _codes(report, code: str) -> tuple[list[dict], list[dict]]:
    d = report.to_dict()
    return [f for f in d["findings"] if f["code"] == code], [c for c in d["checks"] if c["code"] == code]


def test_off_unless_asked(digits_model, digits_data):
    _, _, x, y = digits_data
    report = run_audit(
        digits_model, _dataset(x[:40], y[:40], "t"), replace(BASE, limit=40), sections=PIPELINE
    )
    data = _valid(report)
    assert data["privacy"] is None and "privacy" in data["sections"]
    assert not any(c["code"].startswith("BA5") for c in data["checks"])
    assert any(isinstance(s, PrivacySection) for s in SECTIONS)  # in the default pipeline, last
    assert SECTIONS[-1].name == "privacy"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"privacy": ("membership",)}, "--training-data"),
        ({"privacy": "extraction,stealing"}, "unknown privacy 'stealing'"),
        ({"privacy": "extraction,extraction"}, "names something twice"),
        ({"privacy": "extraction", "privacy_budget": "500,lots"}, "whole numbers"),
        ({"privacy": "extraction", "privacy_budget": (0,)}, "positive whole numbers"),
        ({"privacy": "extraction", "output_policy": "confidences"}, "unknown output policy"),
        ({"privacy": "membership", "training_data": "digits", "privacy_references": -1}, ">= 0"),
    ],
)
def test_bad_privacy_settings_are_refused_with_the_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AuditConfig(**kwargs)


def test_settings_parse_from_flags_and_toml(tmp_path):
    cfg = AuditConfig(privacy="Extraction, membership", training_data="digits", privacy_budget="2000,500,500")
    assert cfg.privacy == ("extraction", "membership") and cfg.privacy_budget == (500, 2000)
    assert cfg.to_dict()["privacy"] == ["extraction", "membership"]
    assert AuditConfig(privacy="extraction", output_policy="TOP3").output_policy == "top3"
    # training data used by privacy alone is not "set but unused"
    assert AuditConfig(privacy="inversion", training_data="digits").training_data == "digits"
    path = tmp_path / "audit.toml"
    path.write_text(
        'privacy = ["extraction", "inversion"]\noutput_policy = "labels"\nprivacy_budget = [100, 50]\n'
        'privacy_pool = "digits"\nprivacy_references = 0\n'
    )
    cfg = load_config(path)
    assert cfg.privacy == ("extraction", "inversion") and cfg.output_policy == "labels"
    assert cfg.privacy_budget == (50, 100) and cfg.privacy_pool == "digits" and cfg.privacy_references == 0


@pytest.fixture(scope="module")
def memorised(digits_data):
    """(model, members): an MLP trained to memorise random labels of 150 digits (its training set)."""
    x_train, _, _, _ = digits_data
    g = torch.Generator().manual_seed(3)
    members = x_train[:150]
    labels = torch.randint(0, 10, (150,), generator=g)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(module(members), labels).backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        assert (module(members).argmax(1) == labels).float().mean() > 0.99  # memorised
    return TorchClassifier(module, bounds=(0.0, 1.0), num_classes=10, name="memoriser"), members, labels


def test_membership_leak_of_a_memorising_model_is_high(memorised, digits_data, tmp_path):
    model, members, labels = memorised
    _, _, x_test, y_test = digits_data
    spec = _npz(tmp_path / "train.npz", members, labels)
    cfg = replace(
        BASE, privacy=("membership",), training_data=spec, privacy_samples=100, privacy_references=2
    )
    report = run_audit(model, _dataset(x_test[:120], y_test[:120], "test"), cfg, sections=PIPELINE)
    data = _valid(report)
    mi = data["privacy"]["membership"]
    assert mi["refused"] is None and mi["n_members"] == mi["n_non_members"] == 100
    by = {a["attack"]: a for a in mi["attacks"]}
    assert set(by) == {"threshold", "rmia"} and mi["references"] == 2 and mi["rmia_skipped"] is None
    assert by["threshold"]["auc"] > 0.95 and by["threshold"]["tpr_at_1%_fpr"] > 0.5
    found, ran = _codes(report, "BA502")
    assert len(found) == 1 and found[0]["severity"] == "high" and found[0]["threat"] == "membership"
    assert found[0]["atlas"] == ["AML.T0024.000"] and found[0]["owasp"] == ["ML04"]
    assert len(ran) == 1 and ran[0]["passed"] is False
    html = render_html(report)
    assert "Membership inference" in html and 'alt="membership ROC, log-log"' in html
    summary = "\n".join(privacy_lines(data["privacy"]))
    assert "- membership (threshold): AUC **" in summary and "- membership (rmia)" in summary


def test_no_membership_finding_when_the_members_were_never_trained_on(digits_model, digits_data, tmp_path):
    # digits_model never saw the test split: "members" drawn from it are non-members like the rest
    _, _, x_test, y_test = digits_data
    spec = _npz(tmp_path / "train.npz", x_test[:150], y_test[:150])
    cfg = replace(BASE, privacy=("membership",), training_data=spec, privacy_references=0, limit=150)
    report = run_audit(digits_model, _dataset(x_test[150:], y_test[150:], "test"), cfg, sections=PIPELINE)
    mi = _valid(report)["privacy"]["membership"]
    (a,) = mi["attacks"]
    assert a["attack"] == "threshold" and abs(a["auc"] - 0.5) < 0.1
    assert mi["rmia_skipped"] == "privacy_references = 0"
    found, ran = _codes(report, "BA502")
    assert found == [] and ran[0]["passed"] is True


def test_audited_inputs_found_in_the_training_data_are_not_non_members(digits_model, digits_data, tmp_path):
    _, _, x_test, y_test = digits_data
    spec = _npz(tmp_path / "train.npz", x_test[:100], y_test[:100])
    cfg = replace(BASE, privacy=("membership",), training_data=spec, privacy_references=0, limit=120)
    report = run_audit(digits_model, _dataset(x_test[60:180], y_test[60:180], "t"), cfg, sections=PIPELINE)
    mi = report.to_dict()["privacy"]["membership"]
    assert mi["dropped_overlap"] == 40 and mi["n_non_members"] == 80 == mi["n_members"]


def test_rmia_is_skipped_with_the_reason_when_the_architecture_cannot_be_retrained(digits_data, tmp_path):
    x_train, y_train, x_test, y_test = digits_data

    class Custom(nn.Module):  # a bare parameter: no reset_parameters, a "reference" would start trained
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ self.w

    model = TorchClassifier(Custom(), bounds=(0.0, 1.0), num_classes=10)
    spec = _npz(tmp_path / "train.npz", x_train[:200], y_train[:200])
    cfg = replace(BASE, privacy=("membership",), training_data=spec, privacy_samples=50, limit=60)
    report = run_audit(model, _dataset(x_test[:60], y_test[:60], "t"), cfg, sections=PIPELINE)
    mi = report.to_dict()["privacy"]["membership"]
    assert "reset_parameters" in mi["rmia_skipped"] and [a["attack"] for a in mi["attacks"]] == ["threshold"]


def test_extraction_curve_finding_and_check_agree(digits_model, digits_data):
    _, _, x, y = digits_data
    cfg = replace(BASE, privacy=("extraction",), privacy_budget=(40, 500), privacy_clone_steps=60)
    report = run_audit(digits_model, _dataset(x[:120], y[:120], "test"), cfg, sections=PIPELINE)
    data = _valid(report)
    ex = data["privacy"]["extraction"]
    assert ex["pool_kind"] == "in-distribution pool, worst case"
    assert ex["pool_size"] + ex["held_out"] == 120 and ex["held_out"] == 40
    assert ex["budgets"] == [40, 80] and "capped" in ex["note"]  # 500 > the pool's 80 inputs
    assert [r["output"] for r in ex["runs"]] == ["probs", "labels"]
    for run in ex["runs"]:
        assert run["queries"] == 80 and [p["budget"] for p in run["curve"]] == [40, 80]
        assert all(0 <= p["fidelity"] <= 1 for p in run["curve"])
    assert ex["transfer"]["threat"].startswith("linf") and ex["transfer"]["n"] >= 0
    reached = any(r["reaches_alarm_at"] is not None for r in ex["runs"])
    best = max(p["fidelity"] for r in ex["runs"] for p in r["curve"])
    assert reached == (best >= 0.9)
    found, ran = _codes(report, "BA501")
    assert len(ran) == 1 and ran[0]["passed"] is not reached and len(found) == int(reached)
    assert data["privacy"]["membership"] is None and data["privacy"]["inversion"] is None
    # report compare: leakage as "1 - leak", so that higher is better
    rows = PrivacySection().compare(data, data)
    assert rows and all(o == n for _, o, n in rows)
    fid = ex["runs"][0]["fidelity"]
    assert ("privacy: 1 − clone fidelity (probs, 80 queries)", 1 - fid, 1 - fid) in rows
    assert "- extraction (labels): clone fidelity **" in "\n".join(privacy_lines(data["privacy"]))


def test_label_only_deployment_runs_one_extraction(digits_model, digits_data):
    _, _, x, y = digits_data
    cfg = replace(
        BASE, privacy=("extraction",), output_policy="labels", privacy_budget=(30,), privacy_clone_steps=30
    )
    report = run_audit(digits_model, _dataset(x[:60], y[:60], "test"), cfg, sections=PIPELINE)
    ex = report.to_dict()["privacy"]["extraction"]
    assert [(r["output"], r["trained_on"]) for r in ex["runs"]] == [("labels", "labels")]
    assert ex["budgets"] == [30]  # below the pool's 40 inputs: as asked


def test_inversion_block_and_check(digits_model, digits_data):
    _, _, x, y = digits_data
    cfg = replace(BASE, privacy=("inversion",), privacy_inversion_queries=102, limit=100)
    report = run_audit(digits_model, _dataset(x[:100], y[:100], "test"), cfg, sections=PIPELINE)
    data = _valid(report)
    inv = data["privacy"]["inversion"]
    assert inv["refused"] is None and len(inv["classes"]) == 10 and inv["queries"] <= 10 * 102
    assert "audited data" in inv["note"] and inv["chance"] == pytest.approx(0.1)
    assert 0 <= inv["p_value"] <= 1 and len(inv["ssim"]) == 10
    found, ran = _codes(report, "BA503")
    assert (
        len(ran) == 1
        and ran[0]["passed"] is (inv["p_value"] >= 0.01)
        and len(found) == int(not ran[0]["passed"])
    )
    html = render_html(report)
    assert "MI-Face" in html and 'alt="MI-Face reconstructions and class means"' in html


def test_inversion_is_refused_on_a_model_of_vectors(digits_data):
    _, _, x, y = digits_data
    flat = x[:50].flatten(1)
    model = TorchClassifier(nn.Linear(64, 10), bounds=(0.0, 1.0), num_classes=10)
    report = run_audit(
        model,
        _dataset(flat, y[:50], "vectors"),
        replace(BASE, privacy=("inversion",), limit=50),
        sections=PIPELINE,
    )
    inv = _valid(report)["privacy"]["inversion"]
    assert "image models" in inv["refused"] and _codes(report, "BA503")[1] == []


def test_privacy_checks_reach_junit(memorised, digits_data, tmp_path):
    model, members, labels = memorised
    _, _, x_test, y_test = digits_data
    spec = _npz(tmp_path / "train.npz", members, labels)
    cfg = replace(BASE, privacy=("membership",), training_data=spec, privacy_references=0, limit=80)
    report = run_audit(model, _dataset(x_test[:80], y_test[:80], "t"), cfg, sections=PIPELINE)
    text = write_junit(report, tmp_path / "junit.xml").read_text()
    assert "BA502" in text and "failure" in text
    from bastion.audit.sarif import to_sarif

    sarif = json.dumps(to_sarif(report))
    assert "BA502" in sarif and "AML.T0024.000" in sarif


def test_catalogue_codes_map_to_the_privacy_frameworks():
    assert CATALOG["BA501"].owasp == ("ML05",) and "AML.T0024.002" in CATALOG["BA501"].atlas
    assert CATALOG["BA503"].owasp == ("ML03",) and CATALOG["BA503"].atlas == ("AML.T0024.001",)
    assert "dp-sgd" in CATALOG["BA502"].action


def test_binomial_tail_known_answers():
    assert binomial_tail(0, 5, 0.1) == pytest.approx(1.0)
    assert binomial_tail(5, 5, 0.1) == pytest.approx(1e-5)
    assert binomial_tail(3, 5, 0.1) == pytest.approx(10 * 1e-3 * 0.81 + 5 * 1e-4 * 0.9 + 1e-5)
    assert binomial_tail(1, 10, 0.5) == pytest.approx(1 - 0.5**10)
    # P(X >= 5) = P(X >= 6) + P(X = 5)
    assert math.isclose(binomial_tail(5, 10, 0.5), binomial_tail(6, 10, 0.5) + math.comb(10, 5) / 1024)


def test_a_given_pool_is_queried_and_the_audited_data_held_out(digits_model, digits_data, tmp_path):
    x_train, y_train, x_test, y_test = digits_data
    spec = _npz(tmp_path / "pool.npz", x_train[:50], y_train[:50])
    cfg = replace(
        BASE,
        privacy=("extraction",),
        privacy_pool=spec,
        privacy_budget=(25, 50),
        privacy_clone_steps=30,
        limit=60,
    )
    report = run_audit(digits_model, _dataset(x_test[:60], y_test[:60], "test"), cfg, sections=PIPELINE)
    ex = _valid(report)["privacy"]["extraction"]
    assert ex["pool_kind"] == "given pool (--privacy-pool)" and ex["pool_size"] == 50 and ex["held_out"] == 60
    assert ex["budgets"] == [25, 50] and ex["note"] is None


def test_a_pool_of_another_shape_is_refused_and_the_audit_goes_on(digits_model, digits_data, tmp_path):
    _, _, x_test, y_test = digits_data
    spec = _npz(tmp_path / "pool.npz", x_test[:30].flatten(1), y_test[:30])
    cfg = replace(BASE, privacy=("extraction",), privacy_pool=spec, limit=30)
    report = run_audit(digits_model, _dataset(x_test[:30], y_test[:30], "test"), cfg, sections=PIPELINE)
    ex = _valid(report)["privacy"]["extraction"]
    assert "shape" in ex["refused"] and ex["runs"] == [] and _codes(report, "BA501") == ([], [])


def test_budgets_all_above_the_pool_still_give_a_curve(digits_model, digits_data):
    _, _, x, y = digits_data
    cfg = replace(BASE, privacy=("extraction",), output_policy="labels", privacy_budget=(500, 2000), limit=60)
    cfg = replace(cfg, privacy_clone_steps=30)
    report = run_audit(digits_model, _dataset(x[:60], y[:60], "test"), cfg, sections=PIPELINE)
    ex = report.to_dict()["privacy"]["extraction"]
    assert ex["budgets"] == [20, 40] and "capped to 40" in ex["note"]
    assert [p["budget"] for p in ex["runs"][0]["curve"]] == [20, 40]
