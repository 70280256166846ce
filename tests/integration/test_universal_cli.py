"""``bastion universal``: fitted on the training split, judged on held-out test images beside same-norm
noise; PNG and JSON; both methods; one-line refusals."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion


def test_the_gradient_perturbation_fools_far_more_than_noise(tmp_path) -> None:
    res = bastion(
        "universal", "zoo:digits-cnn", "digits", "--epsilon", "0.15", "--fit", "300", "--limit", "200",
        "--out", str(tmp_path / "u.png"), "--json", str(tmp_path / "u.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    data = json.loads((tmp_path / "u.json").read_text())
    assert data["method"] == "gradient" and data["threat"] == {
        "norm": "linf",
        "epsilon": 0.15,
        "bounds": [0.0, 1.0],
    }
    assert data["perturbation_norm"] <= 0.15 + 1e-6
    assert data["test_fooling_rate"] > data["noise_fooling_rate"] + 0.1
    assert data["perturbed_accuracy"] < data["clean_accuracy"]
    assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"
    assert "random noise, same norm" in res.stdout


def test_deepfool_and_l2_run(tmp_path) -> None:
    res = bastion(
        "universal", "zoo:digits-mlp", "digits", "--epsilon", "1.5", "--norm", "l2", "--method", "deepfool",
        "--passes", "1", "--fit", "60", "--limit", "60", "--json", str(tmp_path / "d.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["method"] == "deepfool" and data["perturbation_norm"] <= 1.5 + 1e-5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epsilon", "2"], "epsilon"),
        (["--epsilon", "0.1", "--method", "pgd"], "unknown --method"),
        (["--epsilon", "0.1", "--out", "u.jpg"], "PNG"),
    ],
)
def test_wrong_use_is_one_line_and_exit_2(args, message) -> None:
    res = bastion("universal", "zoo:digits-cnn", "digits", "--fit", "10", "--limit", "10", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stdout + res.stderr
