"""``bastion certify --method derandomized``: a SoftVote model from a file and its weights, certified the way
the Python API certifies it, also in shards kept for --resume; a model that is not a SoftVote and
--mean/--std are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_inproc import bastion
from safetensors.torch import save_file

FACTORY = """
import torch
from torch import nn
from bastion.certify.derandomized import Ablation, SoftVote


def build():
    base = nn.Sequential(
        nn.Conv2d(2, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, 10)
    )
    return SoftVote(base, Ablation("column", 2), (0.0, 1.0))
"""


@pytest.fixture(scope="module")
def smoothed(tmp_path_factory) -> tuple[Path, Path]:
    from bastion.certify import Ablation, train_ablated
    from bastion.data import load_dataset

    where = tmp_path_factory.mktemp("derand")
    (where / "net.py").write_text(FACTORY)
    namespace: dict = {}
    exec(FACTORY, namespace)
    torch.manual_seed(0)
    soft = namespace["build"]()
    train = load_dataset("digits", split="train")
    train_ablated(soft.base, train.x, train.y, Ablation("column", 2), epochs=6, batch_size=64, lr=3e-3)
    save_file(soft.state_dict(), str(where / "net.safetensors"))
    return where / "net.py", where / "net.safetensors"


def test_certifies_a_softvote_model_as_the_api_does(smoothed, tmp_path) -> None:
    from bastion.certify import DerandomizedSmoothing
    from bastion.data import load_dataset
    from bastion.loading import read_state_dict

    factory, weights = smoothed
    res = bastion(
        "certify", f"{factory}:build", "digits", "--weights", str(weights), "--method", "derandomized",
        "--limit", "40", "--json", str(tmp_path / "d.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["method"] == "derandomized-column" and data["norm"] == "patch"
    assert [c["radius"] for c in data["certified_accuracy"]] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # the same numbers from the Python API on the same 40 inputs
    namespace: dict = {}
    exec(factory.read_text(), namespace)
    soft = namespace["build"]()
    soft.load_state_dict(read_state_dict(str(weights)))
    ds = load_dataset("digits", split="test").take(40, seed=0)
    want = DerandomizedSmoothing("column", 2).certify(soft.base.eval(), ds.x)
    assert [s["radius"] for s in data["samples"]] == want.radius.tolist()
    assert [s["prediction"] for s in data["samples"]] == want.prediction.tolist()
    assert data["certified_accuracy"][0]["accuracy"] > 0.5  # the smoothed classifier works at all
    assert "patch side" in res.stdout and "8 bands voted" in res.stdout


def test_runs_in_shards_and_resumes(smoothed, tmp_path) -> None:
    factory, weights = smoothed
    args = ("certify", f"{factory}:build", "digits", "--weights", str(weights), "--method", "derandomized",
            "--limit", "40", "--shard-size", "15", "--resume", str(tmp_path / "run"))  # fmt: skip
    first = bastion(*args, "--json", str(tmp_path / "1.json"))
    assert first.returncode == 0, first.stderr + first.stdout
    again = bastion(*args, "--json", str(tmp_path / "2.json"))
    assert again.returncode == 0, again.stderr + again.stdout
    a, b = (json.loads((tmp_path / f"{i}.json").read_text()) for i in (1, 2))
    assert b["params"]["engine"]["resumed"] == [0, 1, 2] and a["params"]["engine"]["resumed"] == []
    assert a["samples"] == b["samples"] and a["certified_accuracy"] == b["certified_accuracy"]
    unsharded = bastion(
        "certify", f"{factory}:build", "digits", "--weights", str(weights), "--method", "derandomized",
        "--limit", "40", "--json", str(tmp_path / "3.json"),
    )  # fmt: skip
    assert unsharded.returncode == 0
    assert json.loads((tmp_path / "3.json").read_text())["samples"] == a["samples"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "SoftVote"),
        (["--mean", "0.5", "--std", "0.5"], "drop --mean/--std"),
    ],
)
def test_wrong_use_is_refused(smoothed, extra, message) -> None:
    factory, weights = smoothed
    model = ["zoo:digits-cnn"] if not extra else [f"{factory}:build", "--weights", str(weights)]
    res = bastion("certify", *model, "digits", "--method", "derandomized", "--limit", "5", *extra)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stdout + res.stderr


def test_harden_then_certify_from_the_command_line(smoothed, tmp_path) -> None:
    factory, _ = smoothed
    out = tmp_path / "ablated.safetensors"
    trained = bastion(
        "harden", f"{factory}:build", "digits", "--method", "ablation", "--epochs", "6", "--batch-size", "64",
        "--lr", "0.003", "--out", str(out),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr + trained.stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["method"] == "ablation" and card["method_options"] == {"kind": "column", "size": 2}
    res = bastion(
        "certify", f"{factory}:build", "digits", "--weights", str(out), "--method", "derandomized",
        "--limit", "60", "--json", str(tmp_path / "c.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    curve = {
        c["radius"]: c["accuracy"]
        for c in json.loads((tmp_path / "c.json").read_text())["certified_accuracy"]
    }
    assert curve[0.0] > 0.7 and curve[1.0] > 0.1


def test_harden_ablation_refuses_a_plain_model(tmp_path) -> None:
    out = tmp_path / "x.safetensors"
    res = bastion(
        "harden", "zoo:digits-cnn", "digits", "--method", "ablation", "--epochs", "1", "--out", str(out)
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "SoftVote" in res.stdout + res.stderr and not out.exists()
