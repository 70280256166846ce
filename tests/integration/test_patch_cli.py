"""``bastion patch``: fit on the training split, judge on held-out test images at seen and unseen
placements beside a random patch; the PNG and JSON; one-line refusals."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion


def test_a_targeted_patch_beats_a_random_one_on_held_out_images(tmp_path) -> None:
    res = bastion(
        "patch", "zoo:digits-cnn", "digits", "--area", "0.25", "--target", "0", "--steps", "100",
        "--fit", "300", "--limit", "200", "--out", str(tmp_path / "p.png"),
        "--json", str(tmp_path / "p.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["target"] == 0 and data["patch_shape"] == [1, 4, 4] and data["fit_images"] == 300
    seen, unseen = data["train_placements"], data["unseen_placements"]
    # held-out images not of class 0: the pattern, not the occlusion, does the work
    assert seen["success"] > seen["random_patch"] + 0.15
    assert unseen["success"] > unseen["random_patch"] + 0.1
    assert 100 < seen["images"] < 200  # class-0 and misclassified images are not counted
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "unseen" in res.stdout and "random patch" in res.stdout


def test_untargeted_counts_correct_images_it_breaks(tmp_path) -> None:
    res = bastion(
        "patch", "zoo:digits-mlp", "digits", "--area", "0.25", "--steps", "60", "--fit", "200",
        "--limit", "120", "--json", str(tmp_path / "u.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    data = json.loads((tmp_path / "u.json").read_text())
    assert data["target"] is None
    assert data["train_placements"]["success"] > data["train_placements"]["random_patch"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--area", "0.9"], "area"),
        (["--target", "10"], "--target must be a class index"),
        (["--out", "p.jpg"], "PNG"),
        (["--shape", "star"], "patch shape"),
    ],
)
def test_wrong_use_is_one_line_and_exit_2(args, message) -> None:
    res = bastion("patch", "zoo:digits-cnn", "digits", "--steps", "1", "--fit", "10", "--limit", "10", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stdout + res.stderr
