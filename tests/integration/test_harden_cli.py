"""``bastion harden`` through the real entry point (train, save), then reload and evaluate in-process."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion
from test_cli import bastion as bastion_process


@pytest.fixture(scope="module")
def hardened(tmp_path_factory):
    out = tmp_path_factory.mktemp("harden") / "digits-fgsm.safetensors"
    res = bastion_process(
        "harden", "zoo:digits-mlp", "digits", "--method", "fgsm-rs", "--epsilon", "0.2", "--epochs", "4",
        "--from-scratch", "--batch-size", "64", "--eval-preset", "fast", "--eval-limit", "60",
        "--out", str(out),
    )  # fmt: skip
    return res, out


def test_harden_writes_weights_and_card(hardened):
    res, out = hardened
    assert res.returncode == 0, res.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["method"] == "fgsm-rs" and card["threat"]["epsilon"] == 0.2
    assert card["training"]["epochs"] == 4 and card["training"]["seed"] == 0
    assert len(card["history"]) == 4 and card["history"][-1]["val_robust_accuracy"] is not None
    ev = card["evaluation"]
    assert ev["n"] == 60 and ev["preset"] == "fast" and 0 <= ev["robust_accuracy"] <= ev["clean_accuracy"]
    assert "weights:" in res.stdout and "held-out PGD" in res.stderr + res.stdout


def test_hardened_weights_load_and_evaluate(hardened, tmp_path):
    _, out = hardened
    card = json.loads(out.with_suffix(".json").read_text())
    res = bastion(
        "evaluate", "zoo:digits-mlp", "digits", "--weights", str(out), "--epsilon", "0.2", "--preset", "fast",
        "--limit", "60", "--json", str(tmp_path / "e.json"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    again = json.loads((tmp_path / "e.json").read_text())
    # The same 60 images (seeded subset), the same preset and seed: the card's numbers reproduce.
    assert again["clean_accuracy"] == pytest.approx(card["evaluation"]["clean_accuracy"])
    assert again["robust_accuracy"] == pytest.approx(card["evaluation"]["robust_accuracy"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "magic", "--epsilon", "0.1"], "use one of"),
        (["--method", "pgd"], "needs a threat model"),
        (["--method", "pgd", "--epsilon", "0.1", "--sigma", "0.5"], "it takes"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    out = str(tmp_path / "m.safetensors")
    res = bastion("harden", "zoo:digits-mlp", "digits", "--epochs", "1", "--out", out, *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert message in res.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_out_must_be_safetensors(tmp_path):
    res = bastion("harden", "zoo:digits-mlp", "digits", "--epsilon", "0.1", "--out", str(tmp_path / "m.pt"))
    assert res.returncode == 2 and "safetensors" in res.stderr
