"""``bastion certify``: smoothing (through the real entry point) and IBP, JSON, plot, errors."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion
from test_cli import bastion as bastion_process


def test_smoothing_writes_per_sample_json_and_a_plot(tmp_path):
    res = bastion_process(
        "certify", "zoo:digits-cnn", "digits", "--sigma", "0.25", "--n", "500", "--n0", "20", "--limit", "20",
        "--json", str(tmp_path / "c.json"), "--plot", str(tmp_path / "c.png"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["method"] == "smoothing" and data["norm"] == "l2" and data["n_samples"] == 20
    assert data["params"]["sigma"] == 0.25 and data["params"]["n_estimate"] == 500
    assert [c["radius"] for c in data["certified_accuracy"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    samples = data["samples"]
    assert len(samples) == 20
    for s in samples:
        assert (s["prediction"] == -1) == s["abstained"]
        assert s["radius"] >= 0 and (not s["abstained"] or s["radius"] == 0)
    at_quarter = sum(
        (not s["abstained"]) and s["prediction"] == s["label"] and s["radius"] >= 0.25 for s in samples
    )
    assert data["certified_accuracy"][1]["accuracy"] == pytest.approx(at_quarter / 20)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert "certified accuracy" in res.stdout


def test_ibp_reports_at_epsilon(tmp_path):
    res = bastion(
        "certify", "zoo:digits-cnn", "digits", "--method", "ibp", "--epsilon", "0.001", "--limit", "50",
        "--json", str(tmp_path / "i.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "i.json").read_text())
    assert data["method"] == "ibp" and data["params"]["epsilon"] == 0.001
    assert [c["radius"] for c in data["certified_accuracy"]] == [0.0, 0.001]
    assert data["certified_accuracy"][1]["accuracy"] > 0.8
    assert {s["radius"] for s in data["samples"]} <= {0.0, 0.001}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "3"], "needs --sigma"),
        (["--method", "ibp"], "needs --epsilon"),
        (["--method", "crown", "--epsilon", "0.1"], "unknown --method"),
        (["--sigma", "0.25", "--radii", "a,b"], "comma-separated"),
        (["--method", "ibp", "--epsilon", "0.1", "--norm", "l2"], "linf"),
    ],
)
def test_bad_options_fail_with_a_clear_message(args, message):
    res = bastion("certify", "zoo:digits-cnn", "digits", *args)
    assert res.returncode == 2
    assert message in res.stderr + res.stdout


def test_help_teaches_both_methods():
    res = bastion("certify", "--help")
    assert res.returncode == 0, res.stderr
    for word in ("--sigma", "--epsilon", "--n0", "--alpha", "--radii", "smoothing", "ibp", "abstention"):
        assert word in res.stdout
