"""``bastion harden --method dp-sgd`` (and the other training-time privacy options) end to end (the
command run in-process): one-line usage errors with exit code 2, a card whose epsilon is the accountant's."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    pytest.importorskip("opacus")
    out = tmp_path_factory.mktemp("dp") / "digits-dp.safetensors"
    res = bastion(
        "harden", "zoo:digits-mlp", "digits", "--method", "dp-sgd", "--target-epsilon", "2",
        "--delta", "1e-5", "--max-grad-norm", "1.5", "--accountant", "rdp", "--epochs", "2",
        "--batch-size", "64", "--optimizer", "sgd", "--momentum", "0", "--lr", "0.5",
        "--schedule", "constant", "--from-scratch", "--eval-limit", "100", "--out", str(out),
    )  # fmt: skip
    return res, out


def test_dp_sgd_writes_the_privacy_record(private):
    from opacus.accountants import RDPAccountant

    res, out = private
    assert res.returncode == 0, res.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    p = card["privacy"]
    assert card["method"] == "dp-sgd" and p["accountant"] == "rdp" and p["max_grad_norm"] == 1.5
    assert p["steps"] == 2 * round(1 / p["sample_rate"]) and p["poisson_sampling"] is True
    accountant = RDPAccountant()
    accountant.history = [(p["noise_multiplier"], p["sample_rate"], p["steps"])]
    assert p["epsilon"] == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-9)
    assert 1.98 <= p["epsilon"] <= 2.0
    assert card["training"]["optimizer"] == "sgd" and card["training"]["momentum"] == 0.0
    assert f"({p['epsilon']:.4g}, 1e-05)-DP by the rdp accountant" in res.stdout.replace("\n", " ")
    assert card["evaluation"]["clean_accuracy"] > 0.3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "dp-sgd"], "needs a privacy budget: pass --target-epsilon"),
        (["--method", "dp-sgd", "--target-epsilon", "3", "--delta", "0"], "delta must lie in (0, 1)"),
        (["--method", "dp-sgd", "--target-epsilon", "3", "--delta", "0.01"], "pass --delta 1e-05 or smaller"),
        (["--method", "dp-sgd", "--target-epsilon", "3", "--accountant", "gdp"], "use one of: prv, rdp"),
        (["--method", "pgd", "--epsilon", "0.1", "--target-epsilon", "3"], "cannot be combined"),
        (["--method", "standard", "--delta", "1e-5"], "belong to --method dp-sgd"),
        (["--method", "standard", "--patience", "2", "--validation", "0"], "needs held-out data"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    out = str(tmp_path / "m.safetensors")
    res = bastion("harden", "zoo:digits-mlp", "digits", "--epochs", "1", "--out", out, *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert message in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr
    assert "Traceback" not in res.stderr


def test_negative_smoothing_weight_decay_and_early_stopping(tmp_path):
    out = tmp_path / "ls.safetensors"
    res = bastion(
        "harden", "zoo:digits-mlp", "digits", "--method", "label-smoothing", "--smoothing", "-0.1",
        "--weight-decay", "1e-4", "--patience", "1", "--lr", "1e-9", "--schedule", "constant",
        "--epochs", "5", "--eval-limit", "50", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["method_options"] == {"smoothing": -0.1} and card["training"]["weight_decay"] == 1e-4
    # lr 1e-9 leaves the held-out accuracy flat: stopped after one check without improvement.
    assert card["stopped_early"] is True and len(card["history"]) == 2
    assert "early stopping" in res.stderr
