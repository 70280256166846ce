"""``bastion scan-model``: a BadNets-backdoored digits CNN saved as safetensors is flagged by the
command (exit 1, JSON, PNG); the zoo's clean digits CNN is not (exit 0, slow); usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_inproc import bastion
from typer.testing import CliRunner

from bastion.cli import scan_model_cmd  # noqa: F401  (registers `scan-model` on the app)
from bastion.cli.app import app

TARGET = 0
SPEC = "bastion.zoo.architectures:digits_cnn"
FAST = ("--limit", "200", "--steps", "200")
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    """``bastion scan-model ARGS`` in-process: exit code and output with whitespace normalised."""
    res = runner.invoke(app, ["scan-model", *args])
    return res.exit_code, " ".join(res.output.split())


@pytest.fixture(scope="module")
def backdoored(backdoored_digits) -> Path:
    """Weights of the digits CNN trained on 10% BadNets-poisoned digits (shared with the unit tests)."""
    return backdoored_digits.path


@pytest.mark.slow  # 12 s; tests/unit/audit/test_training_threats.py flags the same backdoor in-process
def test_backdoored_model_is_flagged(backdoored, tmp_path):
    report, image = tmp_path / "scan.json", tmp_path / "triggers.png"
    res = bastion(
        "scan-model", SPEC, "digits", "--weights", str(backdoored), *FAST,
        "--json", str(report), "--image", str(image),
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "backdoor suspected: class 0 (anomaly index" in " ".join(res.stdout.split())
    payload = json.loads(report.read_text())
    assert payload["flagged"] == [TARGET] and payload["suspected"] is True
    assert payload["n_samples"] == 200 and payload["params"]["steps"] == 200
    rows = payload["classes"]
    assert [r["class"] for r in rows] == list(range(10))
    assert rows[TARGET]["anomaly_index"] > 2 and rows[TARGET]["mask_l1"] < min(r["mask_l1"] for r in rows[1:])
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "triggers written to" in res.stderr


@pytest.mark.slow
def test_clean_model_passes(tmp_path):
    code, text = run("zoo:digits-cnn", "digits", *FAST, "--json", str(tmp_path / "s.json"))
    assert code == 0, text
    assert "no class stands out" in text
    assert json.loads((tmp_path / "s.json").read_text())["flagged"] == []


def test_exit_0_when_no_class_stands_out(backdoored):
    # Five steps: no trigger has shrunk yet, every mask is about as large as the others.
    code, text = run(SPEC, "digits", "--weights", str(backdoored), "--limit", "50", "--steps", "5")
    assert code == 0, text
    assert "no class stands out: the smallest trigger (class" in text


def test_help_documents_exit_codes_and_an_example():
    code, text = run("--help")
    assert code == 0
    for words in ("Exit code: 1 when a class is flagged", "CI pipeline", "Example", "--image", "--method"):
        assert words in text


def test_unknown_method_is_a_usage_error(tmp_path):
    code, text = run("zoo:digits-cnn", "digits", "--method", "magic", "--json", str(tmp_path / "j"))
    assert code == 2 and "neural-cleanse" in text
    assert not (tmp_path / "j").exists()
