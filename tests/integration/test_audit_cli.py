"""``bastion audit`` and ``bastion report compare``: the shared sound report through the real entry point
(a process), the rest in this process (``cli_inproc``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from cli_inproc import bastion
from test_cli import bastion as bastion_process

from bastion.audit.report import SCHEMA_VERSION
from bastion.audit.schema import report_schema

ROOT = Path(__file__).parents[2]
SCHEMA = report_schema()
SMALL = ["--limit", "40", "--preset", "fast", "--seed", "0"]

MASKED_FACTORY = """
import torch
from bastion import zoo
from bastion.audit.report import SCHEMA_VERSION
from bastion.audit.schema import report_schema


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
def sound_report(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("audit") / "report"
    res = bastion_process("audit", "zoo:digits-mlp", "digits", *SMALL, "--out", str(out))
    return res, out


def test_audit_help_teaches():
    text = bastion("audit", "--help").stdout
    for word in ("--out", "--config", "--fail-on", "--min-robust-accuracy", "Exit code", "Example"):
        assert word in text
    assert "--certify" in text and "--certify-n" in text and "--certify-alpha" in text
    for option in ("--scan-model", "--scan-data", "--training-data", "--training-manifest"):
        assert option in text
    assert "BA401" in text and "BA404" in text and "label-noise" in text


def test_sound_model_passes_and_writes_three_files(sound_report):
    res, out = sound_report
    assert res.returncode == 0, res.stderr
    assert "PASS" in res.stdout and "report.html" in res.stdout
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["verdict"]["passed"] and data["findings"] == []
    assert data["data"]["n_samples"] == 40 and data["config"]["preset"] == "fast"
    assert (out / "report.html").stat().st_size > 10_000
    assert "PASS" in (out / "summary.md").read_text()


def test_same_seed_same_numbers(sound_report, tmp_path):
    _, out = sound_report
    res = bastion("audit", "zoo:digits-mlp", "digits", *SMALL, "--out", str(tmp_path / "again"))
    assert res.returncode == 0, res.stderr
    a = json.loads((out / "report.json").read_text())
    b = json.loads((tmp_path / "again" / "report.json").read_text())
    for key in ("clean", "threats", "curves", "checks", "findings", "verdict"):
        if key == "threats":
            for t in (a, b):
                for th in t["threats"]:
                    for s in th["stages"]:
                        s["seconds"] = 0
        assert a[key] == b[key], key


def test_minimum_robust_accuracy_fails_with_exit_1(tmp_path):
    res = bastion(
        "audit",
        "zoo:digits-mlp",
        "digits",
        *SMALL,
        "--no-checks",
        "--no-curve",
        "--min-robust-accuracy",
        "0.99",
        "--out",
        str(tmp_path / "r"),
    )
    assert res.returncode == 1, res.stderr
    assert "BA301" in res.stdout and "FAIL" in res.stdout
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"]["passed"] is False


def test_masked_model_is_caught(tmp_path):
    factory = tmp_path / "masked.py"
    factory.write_text(MASKED_FACTORY)
    res = bastion("audit", f"{factory}:make", "digits", *SMALL, "--no-curve", "--out", str(tmp_path / "r"))
    assert res.returncode == 1, res.stderr
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    codes = {f["code"] for f in data["findings"]}
    assert "BA103" in codes and codes & {"BA201", "BA205", "BA206"}
    t = data["threats"][0]
    assert t["robust_accuracy"] < t["naive_robust_accuracy"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "white-box only (naive)" in html and "BA103" in html


def test_defense_flag_audits_naive_and_bpda(tmp_path):
    out = tmp_path / "r"
    res = bastion("audit", "zoo:digits-mlp", "digits", *SMALL, "--no-curve", "--epsilon", "0.2",
                  "--defense", "bits:3", "--out", str(out))  # fmt: skip
    assert res.returncode == 1, res.stderr  # BA208 is high severity
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["config"]["defense"] == "bits:3"
    assert "BA208" in {f["code"] for f in data["findings"]}
    assert "behind defense" in (out / "report.html").read_text()


def test_certify_flag_reports_certified_robustness(tmp_path):
    out = tmp_path / "r"
    res = bastion("audit", "zoo:digits-mlp", "digits", *SMALL, "--no-checks", "--no-curve", "--limit", "30",
                  "--epsilon", "0.01", "--certify", "ibp", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "certified (ibp) linf ε=0.01" in res.stdout
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == SCHEMA_VERSION and data["config"]["certify"] == "ibp"
    (row,) = data["certification"]["threats"]
    assert row["status"] == "measured" and row["certified_broken"] == 0
    assert 0.0 < row["certified_accuracy"] <= data["threats"][0]["robust_accuracy"]
    assert "Certified robustness" in (out / "report.html").read_text()
    assert "Certified robustness" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def poisoned_files(tmp_path_factory) -> tuple[Path, Path]:
    """Digits' train split with a BadNets patch on 10% of it (target 0) as train.npz, and its manifest."""
    import numpy as np

    from bastion.attacks.poisoning import Backdoor
    from bastion.attacks.poisoning.triggers import PatchTrigger
    from bastion.data import load_dataset, load_digits
    from bastion.provenance import build_manifest

    folder = tmp_path_factory.mktemp("poisoned")
    poisoned = Backdoor(PatchTrigger(), target=0, rate=0.1)(load_digits("train"), seed=0).dataset
    np.savez(folder / "train.npz", x=poisoned.x.numpy(), y=poisoned.y.numpy())
    spec = f"npz:{folder / 'train.npz'}"
    build_manifest(load_dataset(spec, split="train"), spec=spec).save(folder / "train.json")
    return folder / "train.npz", folder / "train.json"


@pytest.mark.slow  # trains the backdoored model, then a Neural Cleanse scan: about 30 s on 2 cores
def test_training_threats_flag_a_backdoored_model(poisoned_files, tmp_path):
    from bastion.data import load_dataset
    from bastion.defenses.training import harden
    from bastion.defenses.training.config import TrainingConfig
    from bastion.zoo.architectures import digits_cnn

    train, manifest = poisoned_files
    weights = tmp_path / "w.safetensors"
    cfg = TrainingConfig(epochs=10, validation=0.0, seed=0)
    data = load_dataset(f"npz:{train}")
    harden(digits_cnn(), data, method="standard", from_scratch=True, config=cfg).save(weights)
    out = tmp_path / "r"
    res = bastion("audit", "bastion.zoo.architectures:digits_cnn", "digits", "--weights", str(weights),
                  *SMALL, "--no-checks", "--no-curve", "--scan-model", "neural-cleanse",
                  "--training-data", f"npz:{train}", "--training-manifest", str(manifest),
                  "--out", str(out))  # fmt: skip
    assert res.returncode == 1, res.stderr  # BA401 is high, --fail-on defaults to high
    assert "backdoor suspected" in res.stdout and "BA401" in res.stdout
    data_json = json.loads((out / "report.json").read_text())
    jsonschema.validate(data_json, SCHEMA)
    block = data_json["training_threats"]
    assert block["model_scan"]["flagged"] == [0] and block["provenance"]["ok"] is True
    assert data_json["verdict"]["failing_findings"] == ["BA401"]
    ran = {c["code"]: c["passed"] for c in data_json["checks"] if c["code"] > "BA4"}
    assert ran == {"BA401": False, "BA404": True}
    assert data_json["config"]["scan_model"] == "neural-cleanse"
    assert data_json["config"]["training_manifest"] == str(manifest)
    html = (out / "report.html").read_text()
    assert "Training-time threats" in html and "recovered triggers" in html
    summary = (out / "summary.md").read_text()
    assert "backdoor suspected" in summary and "BA401" in summary


def test_training_manifest_gates_the_audit(poisoned_files, tmp_path):
    import numpy as np

    train, manifest = poisoned_files
    copy = tmp_path / "train.npz"  # same file name, so the manifest's file record applies
    args = ["audit", "zoo:digits-mlp", "digits", *SMALL, "--no-checks", "--no-curve", "--limit", "20",
            "--training-data", f"npz:{copy}", "--training-manifest", str(manifest)]  # fmt: skip
    shutil.copy(train, copy)
    intact = bastion(*args, "--out", str(tmp_path / "intact"))
    assert intact.returncode == 0, intact.stderr
    assert "matches" in (tmp_path / "intact" / "summary.md").read_text()
    with np.load(train) as archive:
        x, y = archive["x"].copy(), archive["y"].copy()
    y[3] = (y[3] + 1) % 10  # one flipped label
    np.savez(copy, x=x, y=y)
    tampered = bastion(*args, "--out", str(tmp_path / "tampered"))
    assert tampered.returncode == 1, tampered.stderr
    data = json.loads((tmp_path / "tampered" / "report.json").read_text())
    jsonschema.validate(data, SCHEMA)
    prov = data["training_threats"]["provenance"]
    assert prov["counts"]["changed"] == 1 and prov["changed"][0]["index"] == 3
    assert [f["code"] for f in data["findings"]] == ["BA404"]
    assert "mismatch" in (tmp_path / "tampered" / "summary.md").read_text()
    assert "does not match" in (tmp_path / "tampered" / "report.html").read_text()


def test_config_file_and_flag_precedence(tmp_path):
    cfg = tmp_path / "audit.toml"
    cfg.write_text(
        'preset = "fast"\nlimit = 30\n[[threat]]\nnorm = "l2"\nepsilon = [0.5, 1.0]\n'
        "[checks]\nenabled = false\ncurve = false\n"
    )
    res = bastion(
        "audit",
        "zoo:digits-mlp",
        "digits",
        "--config",
        str(cfg),
        "--limit",
        "20",
        "--out",
        str(tmp_path / "r"),
    )
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["data"]["n_samples"] == 20  # the flag wins over the file
    assert [(t["norm"], t["epsilon"]) for t in data["threats"]] == [("l2", 0.5), ("l2", 1.0)]
    ran = {c["code"] for c in data["checks"]}
    assert not any(code.startswith("BA2") for code in ran)  # --no-checks in the file
    assert {"BA101", "BA106", "BA301"} <= ran


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epsilon", "-0.1"], "epsilon must be"),
        (["--preset", "quick"], "unknown preset"),
        (["--fail-on", "critical"], "unknown severity"),
        (["--norm", "l3"], "unknown norm"),
        (["--config", "missing.toml"], "does not exist"),
        (["--certify", "smoothing"], "needs the noise level"),
        (["--certify", "smoothing:0.25", "--certify-alpha", "0.7"], "certify_alpha must lie in (0, 0.5)"),
        (["--scan-data", "ac"], "scan_data needs the training data to scan: set training_data"),
        (["--scan-model", "strip"], "unknown scan_model 'strip'"),
        (["--training-data", "npz:missing.npz", "--scan-data", "ac"], "missing.npz"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    res = bastion("audit", "zoo:digits-mlp", "digits", *args, "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "r").exists()


def test_report_compare(sound_report, tmp_path):
    _, out = sound_report
    worse = json.loads((out / "report.json").read_text())
    worse["threats"][0]["robust_accuracy"] -= 0.2
    worse["findings"].append(
        {
            "code": "BA205",
            "severity": "high",
            "title": "black-box attack beats white-box attacks",
            "detail": "",
            "meaning": "",
            "action": "",
            "threat": "linf ε=0.1",
            "evidence": {},
        }
    )
    (tmp_path / "new.json").write_text(json.dumps(worse))
    res = bastion(
        "report",
        "compare",
        str(out / "report.json"),
        str(tmp_path / "new.json"),
        "--json",
        str(tmp_path / "c.json"),
    )
    assert res.returncode == 0, res.stderr
    assert "-20.0 pts" in res.stdout and "BA205" in res.stdout
    cmp = json.loads((tmp_path / "c.json").read_text())
    assert [f["code"] for f in cmp["new_findings"]] == ["BA205"]
    gated = bastion(
        "report", "compare", str(out / "report.json"), str(tmp_path / "new.json"), "--fail-on-regression"
    )
    assert gated.returncode == 1
    same = bastion(
        "report", "compare", str(out / "report.json"), str(out / "report.json"), "--fail-on-regression"
    )
    assert same.returncode == 0


def test_report_compare_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    res = bastion("report", "compare", str(tmp_path / "x.json"), str(tmp_path / "x.json"))
    assert res.returncode == 2 and "not a bastion audit report" in res.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_renders_in_headless_chromium_without_console_errors(sound_report, tmp_path):
    # .ci/run installs Chromium and sets BASTION_REQUIRE_BROWSER: there a missing browser fails loudly;
    # elsewhere the test is skipped with the reason.
    if CHROMIUM is None:
        if os.environ.get("BASTION_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required in CI (BASTION_REQUIRE_BROWSER is set) but is not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    _, out = sound_report
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2000",
            f"--screenshot={shot}",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
