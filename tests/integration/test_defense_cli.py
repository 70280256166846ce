"""``bastion evaluate --defense``: both numbers side by side, the one to believe (once through the real
entry point, a process; the other cases run the command in-process)."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion
from test_cli import bastion as bastion_process

BASE = ["evaluate", "zoo:digits-cnn", "digits", "--epsilon", "0.2", "--preset", "fast"]


def test_help_explains_defense_and_eot():
    text = bastion("evaluate", "--help").stdout
    for word in ("--defense", "--eot", "jpeg[:QUALITY]", "resize-pad", "BPDA", "believe"):
        assert word in text


def test_defense_reports_naive_and_adaptive(tmp_path):
    res = bastion_process(*BASE, "--limit", "40", "--defense", "bits:3", "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())  # rich wraps long lines
    assert "naive robust accuracy" in out and "adaptive (BPDA)" in out
    assert "believe the adaptive number" in out
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["believe"] == "adaptive" and d["defense"] == "bits:3" and d["eot_samples"] == 1
    assert d["robust_accuracy"] == d["adaptive"]["robust_accuracy"]
    assert d["naive_robust_accuracy"] == d["naive"]["robust_accuracy"]
    assert d["naive"]["n_samples"] == d["adaptive"]["n_samples"] == 40
    assert d["naive_robust_accuracy"] > 0.8 > 0.2 > d["robust_accuracy"], "bits:3 masks gradients"
    assert f"{d['robust_accuracy']:.2%}" in out and f"{d['naive_robust_accuracy']:.2%}" in out


def test_randomised_defense_with_eot(tmp_path):
    args = [*BASE, "--limit", "12", "--defense", "resize-pad:1.5", "--eot", "2", "--seed", "1"]
    res = bastion(*args, "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["eot_samples"] == 2 and d["adaptive"]["eot_samples"] == 2
    assert d["adaptive"]["stages"][0]["params"]["eot_samples"] == 2
    assert d["naive"]["stages"][0]["params"]["eot_samples"] == 1
    assert "EOT-2" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--defense", "blur:3"], "valid transforms: bits[:BITS], jpeg[:QUALITY]"),
        (["--defense", "jpeg:abc"], "jpeg takes an integer QUALITY"),
        (["--eot", "5"], "add --defense"),
    ],
)
def test_bad_defense_exits_2_with_one_line(args, message):
    res = bastion(*BASE, "--limit", "5", *args)
    assert res.returncode == 2
    assert message in res.stderr and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr


def test_a_deterministic_defense_runs_in_shards_and_resumes(tmp_path):
    args = (
        *BASE,
        "--limit",
        "40",
        "--defense",
        "bits:3",
        "--shard-size",
        "15",
        "--resume",
        str(tmp_path / "r"),
    )
    outs = []
    for name in ("1", "2"):
        res = bastion(*args, "--json", str(tmp_path / f"{name}.json"))
        assert res.returncode == 0, res.stderr + res.stdout
        outs.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert (
        outs[1]["adaptive"]["engine"]["resumed"] == [0, 1, 2]
        and outs[0]["adaptive"]["engine"]["resumed"] == []
    )
    plain = bastion(*BASE, "--limit", "40", "--defense", "bits:3", "--json", str(tmp_path / "3.json"))
    assert plain.returncode == 0, plain.stderr
    whole = json.loads((tmp_path / "3.json").read_text())
    for out in outs:
        assert out["robust_accuracy"] == whole["robust_accuracy"]
        assert out["naive_robust_accuracy"] == whole["naive_robust_accuracy"]
    refused = bastion(*BASE, "--limit", "5", "--defense", "resize-pad", "--resume", str(tmp_path / "x"))
    assert refused.returncode == 2 and "randomised" in refused.stderr and refused.stderr.count("\n") == 1
