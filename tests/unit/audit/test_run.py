"""run_audit end to end on tiny models: silent on a sound model, loud on masked ones, deterministic."""

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import torch

from bastion.audit import AuditConfig, run_audit, write_report
from bastion.audit.schema import report_schema
from bastion.data.dataset import Dataset

MASKING = {"BA103", "BA201", "BA203", "BA205", "BA206", "BA207"}
FAST = AuditConfig(threats=(("linf", 0.1),), preset="fast", limit=60, check_samples=40, noise_draws=20)
SCHEMA = report_schema()


@pytest.fixture()
def digits_test(digits_data) -> Dataset:
    _, _, x, y = digits_data
    return Dataset(x, y, num_classes=10, name="digits-test")


def stable(d):
    d = dict(d)
    d.pop("created")
    d.pop("timing")
    d["threats"] = [{**t, "stages": [{**s, "seconds": 0} for s in t["stages"]]} for t in d["threats"]]
    return d


def test_sound_model_no_false_alarm_and_deterministic(digits_model, digits_test):
    first = run_audit(digits_model, digits_test, replace(FAST, curve=True))
    codes = {f["code"] for f in first.findings}
    assert codes == set(), first.findings
    assert first.passed
    t = first.threats[0]
    assert t["robust_accuracy"] == t["naive_robust_accuracy"]  # no black-box probe beat white-box
    assert 0 <= t["robust_accuracy"] <= first.clean["accuracy"]
    assert all(c["passed"] for c in first.checks)
    assert {c["code"] for c in first.checks} >= {
        "BA201",
        "BA202",
        "BA203",
        "BA204",
        "BA205",
        "BA206",
        "BA207",
    }
    curve = first.curves[0]["points"]
    assert curve[0]["epsilon"] == 0 and curve[-1]["robust_accuracy"] <= 0.01
    again = run_audit(digits_model, digits_test, replace(FAST, curve=True))
    assert stable(first.to_dict()) == stable(again.to_dict())
    jsonschema.validate(first.to_dict(), SCHEMA)


@pytest.mark.parametrize("kind", ["quantised", "saturated", "shattered"])
@pytest.mark.parametrize("seed", [0, 1])
def test_masked_models_are_caught_with_the_adaptive_number_beside_the_naive_one(
    masked_models, digits_test, kind, seed
):
    report = run_audit(masked_models[kind], digits_test, replace(FAST, curve=False, seed=seed))
    codes = {f["code"] for f in report.findings}
    assert codes & MASKING, f"{kind}: no masking finding in {codes}"
    assert not report.passed
    t = report.threats[0]
    assert t["robust_accuracy"] < t["naive_robust_accuracy"] - 0.1, t


def test_gate_on_minimum_robust_accuracy(digits_model, digits_test):
    report = run_audit(
        digits_model, digits_test, replace(FAST, checks=False, curve=False, min_robust_accuracy=0.99)
    )
    assert [f["code"] for f in report.findings] == ["BA301"]
    assert not report.passed and report.verdict["failing_findings"] == ["BA301"]


def test_fail_on_threshold(digits_mlp_module, digits_test):
    import warnings

    from bastion.model import TorchClassifier
    from conftest import SaturatedSoftmax

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soft = TorchClassifier(SaturatedSoftmax(digits_mlp_module, scale=1.0), num_classes=10)
        cfg = replace(FAST, checks=False, curve=False)
        lenient = run_audit(soft, digits_test, cfg)
        strict = run_audit(soft, digits_test, replace(cfg, fail_on="medium"))
    assert [f["code"] for f in lenient.findings] == ["BA101"]  # probabilities, gradients still flow
    assert lenient.passed and not strict.passed


def test_data_outside_bounds_blocks_the_attacks(digits_model, digits_test):
    shifted = Dataset(digits_test.x * 2, digits_test.y, num_classes=10, bounds=(0.0, 2.0), name="x2")
    report = run_audit(digits_model, shifted, FAST)
    assert [f["code"] for f in report.findings] == ["BA106"]
    assert report.threats == [] and report.verdict["blocked"] and not report.passed


def test_write_report_files(digits_model, digits_test, tmp_path):
    report = run_audit(digits_model, digits_test, replace(FAST, check_samples=10))
    paths = write_report(report, str(tmp_path / "out"))
    html = Path(paths["html"]).read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    data = json.loads(Path(paths["json"]).read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["timing"]["render_seconds"] > 0
    md = Path(paths["markdown"]).read_text()
    assert "PASS" in md and "linf ε=0.1" in md
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left behind


def test_tabular_data_skips_square(digits_mlp_module, digits_test):
    from bastion.model import TorchClassifier

    flat = Dataset(digits_test.x.flatten(1), digits_test.y, num_classes=10, name="flat")
    clf = TorchClassifier(
        torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8, 8)), digits_mlp_module), num_classes=10
    )
    report = run_audit(clf, flat, replace(FAST, preset="standard", curve=False, checks=False))
    names = [s["attack"] for s in report.threats[0]["stages"]]
    assert "square" not in names and "apgd-ce" in names


def test_defense_is_audited_naively_and_with_bpda(digits_model, digits_test):
    # Bit-depth reduction to 3 bits hides gradients: the white-box attacks through it as written fail,
    # the same attacks with BPDA break it (BA208), and the headline is the adaptive number.
    cfg = replace(FAST, curve=False, threats=(("linf", 0.2),), defense="bits:3")
    report = run_audit(digits_model, digits_test, cfg)
    codes = {f["code"] for f in report.findings}
    assert "BA208" in codes, codes
    t = report.threats[0]
    assert t["robust_accuracy"] < t["naive_robust_accuracy"] - 0.3, t
    adaptive = [s for s in t["stages"] if s["kind"] == "adaptive"]
    assert adaptive and sum(s["n_fooled"] for s in adaptive) > 0
    assert report.config["defense"] == "bits:3"
    assert any(c["code"] == "BA208" and not c["passed"] for c in report.checks)
    jsonschema.validate(report.to_dict(), SCHEMA)


def test_unknown_defense_is_a_config_error():
    from bastion.audit import ConfigError

    with pytest.raises(ConfigError, match="bits"):
        replace(FAST, defense="sharpen:3")


def test_detector_is_measured_and_attacked_adaptively(digits_model, digits_test, tmp_path):
    cfg = replace(FAST, curve=False, threats=(("linf", 0.1),), detector="msp", check_samples=20)
    report = run_audit(digits_model, digits_test, cfg)
    d = report.threats[0]["detector"]
    assert d["detector"] == "msp" and d["n_clean_held_out"] == 30
    assert d["n_adversarial"] > 0 and 0.0 <= d["tpr_at_5pct"] <= 1.0 and 0.0 <= d["auc"] <= 1.0
    assert d["adaptive_attacked"] == 20
    assert 0.0 <= d["adaptive_evasion_rate"] <= d["adaptive_fools_classifier"]
    # An attacker who knows the max-softmax detector only has to be confident: it gets past it.
    assert d["adaptive_evasion_rate"] > 0.5
    jsonschema.validate(report.to_dict(), SCHEMA)
    write_report(report, tmp_path)
    assert "Detector: msp" in (tmp_path / "report.html").read_text()


def test_a_model_at_chance_fails_the_audit(digits_test):
    from torch import nn

    from bastion.model import TorchClassifier

    torch.manual_seed(0)
    untrained = TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), num_classes=10)
    report = run_audit(untrained, digits_test, replace(FAST, curve=False, checks=False))
    assert "BA108" in {f["code"] for f in report.findings} and not report.passed
    (ran,) = [c for c in report.checks if c["code"] == "BA108"]
    assert not ran["passed"] and ran["measured"]["clean_accuracy"] < 0.3
    assert report.verdict["headline"].startswith("FAIL")
    assert report.to_dict()["model"]["source"]["bounds_source"] == "declared"
