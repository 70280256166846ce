"""Training-time threats in the audit (BA401-BA404): a BadNets-backdoored digits CNN flagged and a clean one
not, the data scans' findings matching the scanners' own verdicts, a tampered training set caught by its
manifest, refusals recorded rather than raised, the report block valid against schema.json, and the
config keys' validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from bastion import zoo
from bastion.attacks.poisoning import Backdoor
from bastion.attacks.poisoning.triggers import PatchTrigger
from bastion.audit import AuditConfig, ConfigError, load_config, run_audit, write_report
from bastion.audit.render import render_summary
from bastion.audit.report import SCHEMA_VERSION
from bastion.audit.schema import report_schema
from bastion.audit.training_threats import audit_training_threats, load_training
from bastion.data import load_dataset, load_digits
from bastion.data.dataset import Dataset
from bastion.defenses.training import harden
from bastion.defenses.training.config import TrainingConfig
from bastion.detect import ActivationClustering
from bastion.errors import DataError
from bastion.model import TorchClassifier
from bastion.provenance import build_manifest
from bastion.zoo.architectures import digits_cnn

SCHEMA = report_schema()
QUICK = AuditConfig(preset="fast", limit=40, checks=False, curve=False, examples=0)


def _quiet(task: str, done: int, total: int) -> None:
    return None


def save_npz(path: Path, data: Dataset) -> str:
    np.savez(path, x=data.x.numpy(), y=data.y.numpy())
    return f"npz:{path}"


@pytest.fixture(scope="module")
def poisoned() -> Dataset:
    """Digits' train split with a BadNets patch on 10% of it (non-target images), relabelled 0."""
    return Backdoor(PatchTrigger(), target=0, rate=0.1)(load_digits("train"), seed=0).dataset


@pytest.fixture(scope="module")
def backdoored(poisoned) -> TorchClassifier:
    cfg = TrainingConfig(epochs=10, validation=0.0, seed=0)
    return harden(digits_cnn(), poisoned, method="standard", from_scratch=True, config=cfg).classifier


@pytest.fixture(scope="module")
def training_files(tmp_path_factory, poisoned) -> tuple[Path, str, Path]:
    """The poisoned training set as train.npz, its spec, and a manifest written while it was trusted."""
    folder = tmp_path_factory.mktemp("training")
    spec = save_npz(folder / "train.npz", poisoned)
    manifest = folder / "train.json"
    build_manifest(load_dataset(spec, split="train"), spec=spec).save(manifest)
    return folder / "train.npz", spec, manifest


def scans(model, x, cfg, differentiable=True, class_names=tuple(str(k) for k in range(10))):
    train, manifest = load_training(cfg)
    return audit_training_threats(
        model, x, class_names, train, manifest, cfg, _quiet, differentiable=differentiable
    )


def test_backdoored_model_is_flagged_end_to_end(backdoored, training_files, tmp_path):
    _, spec, manifest = training_files
    cfg = replace(QUICK, scan_model="neural-cleanse", training_data=spec, training_manifest=str(manifest))
    report = run_audit(backdoored, load_digits("test"), cfg)
    data = report.to_dict()
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == SCHEMA_VERSION
    block = report.training_threats
    scan = block["model_scan"]
    assert scan["refused"] is None and scan["flagged"] == [0] and scan["n_inputs"] == 40
    assert "only 40 clean inputs" in scan["note"]  # fewer than 100: the report warns
    assert scan["classes"][0]["anomaly_index"] > scan["threshold"] == 2.0
    assert block["provenance"]["ok"] and block["data_scan"] is None and block["n_training_samples"] == 1347
    assert [f["code"] for f in report.findings] == ["BA401"] and not report.passed
    assert "class 0 (anomaly index" in report.findings[0]["detail"]
    ran = {c["code"]: c["passed"] for c in report.checks if c["code"].startswith("BA4")}
    assert ran == {"BA401": False, "BA404": True}
    (trigger,) = report.triggers
    assert trigger.label == 0 and trigger.mask.shape == (1, 8, 8) and trigger.pattern.shape == (1, 8, 8)
    corner = trigger.mask[0, -2:, -2:].sum() / trigger.mask.sum()
    assert corner > 0.5, "the recovered mask sits on the BadNets patch in the bottom-right corner"
    write_report(report, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "Training-time threats" in html and 'alt="recovered triggers"' in html and "flagged" in html
    summary = (tmp_path / "summary.md").read_text()
    assert "**Training-time threats**" in summary and "backdoor suspected" in summary
    assert "matches (1 file(s), 1,347 samples)" in summary


def test_clean_model_is_not_flagged():
    cfg = replace(QUICK, scan_model="neural-cleanse")
    out = scans(zoo.load("digits-cnn"), load_digits("test").x[:200], cfg)
    scan = out.block["model_scan"]
    assert scan["refused"] is None and scan["flagged"] == [] and not scan["suspected"]
    assert scan["n_inputs"] == 200 and scan["note"] is None
    assert out.findings == [] and out.triggers == []
    assert [(c["code"], c["passed"]) for c in out.checks] == [("BA401", True)]
    assert out.checks[0]["measured"]["max_anomaly_index"] <= 2.0
    assert out.block["data_scan"] is None and out.block["provenance"] is None


def test_tampered_training_data_fails_its_manifest(poisoned, tmp_path):
    spec = save_npz(tmp_path / "train.npz", poisoned)
    build_manifest(load_dataset(spec, split="train"), spec=spec).save(tmp_path / "m.json")
    cfg = replace(QUICK, training_data=spec, training_manifest=str(tmp_path / "m.json"))
    intact = scans(None, torch.empty(0), cfg)
    assert intact.findings == [] and intact.block["provenance"]["ok"] is True
    (check,) = intact.checks
    assert check["code"] == "BA404" and check["passed"] and set(check["measured"].values()) == {0}
    x, y = poisoned.x.clone(), poisoned.y.clone()
    x[5, 0, 3, 3] = 1.0 - x[5, 0, 3, 3]  # one pixel of one sample
    y[7] = (y[7] + 1) % 10  # and one label
    save_npz(tmp_path / "train.npz", Dataset(x, y, 10, poisoned.bounds))
    tampered = scans(None, torch.empty(0), cfg)
    prov = tampered.block["provenance"]
    assert prov["ok"] is False and prov["counts"]["changed"] == 2 and prov["counts"]["files_changed"] == 1
    assert [(c["index"], c["input"], c["label_before"] != c["label_after"]) for c in prov["changed"]] == [
        (5, True, False),
        (7, False, True),
    ]
    (f,) = tampered.findings
    assert f.code == "BA404" and str(f.severity) == "high" and "2 changed" in f.detail
    assert tampered.checks[0]["passed"] is False


def test_data_scans_report_what_the_scanners_find():
    model = zoo.load("digits-cnn")
    train = load_digits("train")
    truth = ActivationClustering(seed=0).scan(model, train)
    cfg = replace(QUICK, training_data="digits", scan_data="ac")
    out = scans(model, torch.empty(0), cfg)
    sub = out.block["data_scan"]
    assert sub["suspected"] == truth.suspected and sub["n_flagged"] == int(truth.flagged.sum())
    assert sub["flagged_indices"] == truth.flagged_indices.tolist()[:20] and sub["n_samples"] == len(train)
    assert [c["code"] for c in out.checks] == ["BA402"]
    assert truth.suspicious_classes == (1,)  # digits' "1" with and without a base: a real subpopulation
    (f,) = out.findings
    assert f.code == "BA402" and f.evidence["suspicious_classes"] == [1] and not out.checks[0]["passed"]
    assert f"{sub['n_flagged']} of {len(train)} training samples (class 1: " in f.detail
    spectral = scans(model, torch.empty(0), replace(cfg, scan_data="spectral"))
    assert spectral.findings == [] and spectral.checks[0]["passed"]  # no sign of poisoning in clean digits
    assert "no sign of poisoning" in spectral.block["data_scan"]["verdict"]


def test_data_scan_at_a_chosen_layer_finds_the_backdoor(backdoored, training_files):
    # The poison (135 images) outnumbers class 0's clean images (133): only label persistence tells which
    # group is which. The flattened conv features ("5") separate it; the 128-unit head does not.
    _, spec, _ = training_files
    poisoned = Backdoor(PatchTrigger(), target=0, rate=0.1)(
        load_digits("train"), seed=0
    ).poisoned  # the truth
    cfg = replace(QUICK, training_data=spec, scan_data="spectral", scan_layer="5")
    out = scans(backdoored, torch.empty(0), cfg)
    (f,) = out.findings
    assert f.code == "BA402" and f.evidence["suspicious_classes"] == [0]
    sub = out.block["data_scan"]
    assert sub["n_flagged"] == int(poisoned.sum())
    assert all(poisoned[i] for i in sub["flagged_indices"])
    assert "majority is flagged" in sub["classes"][0]["note"]
    with pytest.raises(ConfigError, match="scan_layer must name a layer"):
        AuditConfig(training_data=spec, scan_data="ac", scan_layer=" ")


def test_label_noise_retrains_the_architecture_and_flags_flipped_labels(tmp_path):
    train = load_digits("train")
    y = train.y.clone()
    threes = (y == 3).nonzero().flatten()
    y[threes[torch.randperm(threes.numel(), generator=torch.Generator().manual_seed(0))[:30]]] = 8
    spec = save_npz(tmp_path / "noisy.npz", Dataset(train.x, y, 10, train.bounds))
    model = zoo.load("digits-mlp")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    out = scans(model, torch.empty(0), replace(QUICK, training_data=spec, scan_data="label-noise"))
    sub = out.block["data_scan"]
    assert (
        sub["refused"] is None
        and sub["suspected"]
        and 8 in [c["label"] for c in sub["classes"] if c["suspicious"]]
    )
    assert "retrained" in sub["note"] and sub["params"]["folds"] == 4
    (f,) = out.findings
    assert f.code == "BA403" and str(f.severity) == "medium" and "class 8" in f.detail
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


def test_refusals_are_recorded_not_raised(digits_mlp_module, digits_data, poisoned, tmp_path):
    tabular = TorchClassifier(digits_mlp_module, bounds=(0.0, 1.0), num_classes=10)
    x_flat = digits_data[2][:50].flatten(1)  # (N, 64): no image for Neural Cleanse
    out = scans(tabular, x_flat, replace(QUICK, scan_model="neural-cleanse"))
    assert "image models" in out.block["model_scan"]["refused"] and out.checks == [] and out.findings == []
    blind = scans(
        tabular, digits_data[2][:50], replace(QUICK, scan_model="neural-cleanse"), differentiable=False
    )
    assert "not differentiable (BA105)" in blind.block["model_scan"]["refused"]
    three = Dataset(poisoned.x[poisoned.y < 3], poisoned.y[poisoned.y < 3], 3, poisoned.bounds)
    spec = save_npz(tmp_path / "three.npz", three)
    mismatch = scans(tabular, x_flat, replace(QUICK, training_data=spec, scan_data="spectral"))
    assert "3 classes" in mismatch.block["data_scan"]["refused"] and mismatch.checks == []
    digits_test = build_manifest(load_dataset("digits", split="test"), spec="digits")
    digits_test.save(tmp_path / "test.json")
    split = scans(
        tabular, x_flat, replace(QUICK, training_data="digits", training_manifest=str(tmp_path / "test.json"))
    )
    assert (
        "'test' split" in split.block["provenance"]["refused"]
        and "--split train" in split.block["provenance"]["refused"]
    )


def test_a_refusal_does_not_stop_the_audit(digits_mlp_module, digits_data):
    _, _, x, y = digits_data
    tabular = Dataset(x.flatten(1), y, num_classes=10, name="digits-flat")
    model = TorchClassifier(digits_mlp_module, bounds=(0.0, 1.0), num_classes=10)  # starts with Flatten
    report = run_audit(model, tabular, replace(QUICK, scan_model="neural-cleanse"))
    jsonschema.validate(report.to_dict(), SCHEMA)
    assert "image models" in report.training_threats["model_scan"]["refused"]
    assert report.passed and report.threats[0]["robust_accuracy"] >= 0
    assert "backdoor scan (Neural Cleanse): refused" in render_summary(report)


def test_blocked_audit_refuses_the_model_scan_but_verifies_the_data(backdoored, training_files):
    _, spec, manifest = training_files
    test = load_digits("test")
    outside = Dataset(test.x[:20] * 2, test.y[:20], num_classes=10, name="scaled")
    cfg = replace(QUICK, scan_model="neural-cleanse", training_data=spec, training_manifest=str(manifest))
    report = run_audit(backdoored, outside, cfg)
    jsonschema.validate(report.to_dict(), SCHEMA)
    assert report.verdict["blocked"] and "outside" in report.training_threats["model_scan"]["refused"]
    assert report.training_threats["provenance"]["ok"] is True


def test_missing_training_data_fails_before_any_attack(digits_model, digits_data):
    test = Dataset(digits_data[2], digits_data[3], num_classes=10)
    cfg = replace(QUICK, training_data="npz:/nonexistent/train.npz", scan_data="ac")
    with pytest.raises(DataError, match="nonexistent"):
        run_audit(digits_model, test, cfg)


def test_nothing_configured_means_no_block(digits_model, digits_data):
    report = run_audit(digits_model, Dataset(digits_data[2], digits_data[3], 10), replace(QUICK, limit=20))
    assert report.training_threats is None and report.to_dict()["training_threats"] is None
    assert "training_threats" in SCHEMA["properties"] and "training_threats" not in SCHEMA["required"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scan_data": "ac"}, "scan_data needs the training data to scan: set training_data"),
        ({"training_manifest": "m.json"}, "training_manifest needs the training data to verify"),
        ({"scan_model": "strip"}, "unknown scan_model 'strip'; use one of: neural-cleanse"),
        (
            {"training_data": "digits", "scan_data": "kmeans"},
            "unknown scan_data 'kmeans'; use one of: ac, spectral",
        ),
        ({"training_data": "digits"}, "nothing uses it: add scan_data"),
        ({"training_data": " ", "scan_data": "ac"}, "training_data must be a non-empty string"),
        ({"scan_model": 1}, "unknown scan_model 1"),
    ],
)
def test_bad_training_options_are_refused_with_the_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AuditConfig(**kwargs)


def test_training_keys_are_normalised_and_read_from_toml(tmp_path):
    cfg = AuditConfig(scan_model=" Neural-Cleanse", training_data="digits", scan_data="AC")
    assert (cfg.scan_model, cfg.scan_data) == ("neural-cleanse", "ac")
    path = tmp_path / "audit.toml"
    path.write_text(
        'scan_model = "neural-cleanse"\ntraining_data = "npz:train.npz"\nscan_data = "label-noise"\n'
        'training_manifest = "train.json"\n'
    )
    cfg = load_config(path)
    assert cfg.to_dict()["scan_data"] == "label-noise" and cfg.training_manifest == "train.json"
    assert cfg.training_data == "npz:train.npz" and cfg.scan_model == "neural-cleanse"


def test_several_data_scans_are_compared_and_a_disagreement_is_a_finding():
    # Clean digits hold a real subpopulation in class "1" (with and without a base) that activation
    # clustering reports and spectral signatures do not: the audit must say the scanners disagree.
    model = zoo.load("digits-cnn")
    cfg = replace(QUICK, training_data="digits", scan_data="ac, Spectral")
    assert cfg.scan_data == "ac,spectral" and cfg.scan_data_methods == ("ac", "spectral")
    out = scans(model, torch.empty(0), cfg)
    assert [s["method"] for s in out.block["data_scans"]] == ["ac", "spectral"]
    assert out.block["data_scan"] is out.block["data_scans"][0]  # the 1.2 key keeps the first scan
    (d,) = out.block["scan_disagreements"]
    assert (
        d["label"] == 1
        and d["kind"] == "one-sided"
        and d["flagged_by"] == ["ac"]
        and d["quiet"] == ["spectral"]
    )
    assert [c["code"] for c in out.checks] == ["BA402", "BA402", "BA405"] and not out.checks[-1]["passed"]
    ba405 = [f for f in out.findings if f.code == "BA405"]
    assert len(ba405) == 1 and "class 1" in ba405[0].detail
    jsonschema.validate(out.block, {"$ref": "#/$defs/training_threats", "$defs": SCHEMA["$defs"]})
    one = scans(model, torch.empty(0), replace(cfg, scan_data="ac"))
    assert one.block["scan_disagreements"] is None and "BA405" not in {c["code"] for c in one.checks}


def test_data_scan_lists_are_validated():
    assert AuditConfig(training_data="digits", scan_data=["ac", "label-noise"]).scan_data == "ac,label-noise"
    with pytest.raises(ConfigError, match="names a method twice"):
        AuditConfig(training_data="digits", scan_data="ac,AC")
    with pytest.raises(ConfigError, match="unknown scan_data 'ac,kmeans'"):
        AuditConfig(training_data="digits", scan_data="ac,kmeans")
