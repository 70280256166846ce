"""``bastion extract`` through Typer's runner: curve, query count, clone and card, transfer rate, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import bastion.cli.extract_cmd  # noqa: F401  (registers `extract`)
from bastion.attacks.extraction import load_clone
from bastion.cli.app import app
from bastion.data import load_dataset


def invoke(*args: str):
    return CliRunner().invoke(app, ["extract", *args])


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    where = tmp_path_factory.mktemp("extract")
    res = invoke(
        "zoo:digits-mlp", "--pool", "digits", "--budget", "150", "--output", "labels", "--curve", "60",
        "--steps", "60", "--test-data", "digits", "--transfer-epsilon", "0.2", "--seed", "1",
        "--out", str(where / "clone.safetensors"), "--json", str(where / "x.json"),
    )  # fmt: skip
    return res, where


def test_extract_prints_the_curve_and_writes_clone_and_card(extracted):
    res, where = extracted
    assert res.exit_code == 0, res.output
    summary = json.loads((where / "x.json").read_text())
    assert summary["queries"] == 150 and [p["budget"] for p in summary["curve"]] == [60, 150]
    assert summary["output_policy"] == "labels" and summary["strategy"] == "uncertainty"
    assert 0.0 <= summary["transfer"]["rate"] <= 1.0 and summary["transfer"]["n"] > 0
    card = json.loads((where / "clone.json").read_text())
    assert card["victim"] == "zoo:digits-mlp" and card["pool"] == "digits" and card["seed"] == 1
    assert card["fidelity"] == summary["fidelity"] and card["budget"] == 150
    assert "victim queries: 150" in res.output and "transfer rate" in res.output
    test = load_dataset("digits", split="test")
    clone = load_clone(where / "clone.safetensors")
    assert clone(test.x).shape == (len(test), 10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output", "most"], "output policy"),
        (["--strategy", "greedy"], "--strategy"),
        (["--out", "clone.pt"], "safetensors"),
        (["--transfer-epsilon", "0.1"], "--test-data"),
        (["--budget", "5000"], "pool holds"),
    ],
)
def test_bad_arguments_fail_in_one_line(args, message):
    res = invoke("zoo:digits-mlp", "--pool", "digits", "--steps", "5", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.count("error:") == 1
