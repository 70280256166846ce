"""``bastion spatial``: accuracy under the worst rotation and shift, three methods, JSON, refusals."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion


@pytest.mark.parametrize("method", ["worst-of-k", "grid", "first-order"])
def test_rotations_and_shifts_break_a_small_model(method, tmp_path) -> None:
    res = bastion(
        "spatial", "zoo:digits-cnn", "digits", "--method", method, "--limit", "60",
        "--json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["method"] == method and data["n_samples"] == 60
    # digits-cnn: 99% clean; +-30 degrees and 10% shifts break most inputs (docs/spatial.md)
    assert data["clean_accuracy"] > 0.9 and data["spatial_accuracy"] < data["clean_accuracy"] - 0.3
    assert "worst transform" in res.stdout


def test_no_transform_allowed_changes_nothing(tmp_path) -> None:
    res = bastion(
        "spatial", "zoo:digits-cnn", "digits", "--rotation", "0", "--translation", "0", "--limit", "60",
        "--json", str(tmp_path / "z.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    data = json.loads((tmp_path / "z.json").read_text())
    assert data["spatial_accuracy"] == data["clean_accuracy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--method", "affine"], "unknown --method"), (["--translation", "1.5"], "max_translation"),
     (["--rotation", "200"], "max_rotation")],
)  # fmt: skip
def test_wrong_use_is_one_line_and_exit_2(args, message) -> None:
    res = bastion("spatial", "zoo:digits-cnn", "digits", "--limit", "5", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stdout + res.stderr
