"""``bastion scan-data`` end to end: a backdoored digits CNN saved as safetensors, its poisoned .npz."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_inproc import bastion
from test_cli import bastion as bastion_process

ARCH = "bastion.zoo.architectures:digits_cnn"


def badnets(x: torch.Tensor, y: torch.Tensor, share: float) -> tuple[torch.Tensor, ...]:
    """A white 2x2 patch at the bottom right of ``share`` of the non-0 images, relabelled 0."""
    pool = (y != 0).nonzero().flatten()
    chosen = pool[torch.randperm(pool.numel(), generator=torch.Generator().manual_seed(0))]
    chosen = chosen[: round(share * pool.numel())]
    x, y = x.clone(), y.clone()
    x[chosen, :, -2:, -2:] = 1.0
    y[chosen] = 0
    truth = torch.zeros(y.numel(), dtype=torch.bool)
    truth[chosen] = True
    return x, y, truth


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from bastion.data import load_digits
    from bastion.data.dataset import Dataset
    from bastion.defenses.training import TrainingConfig, harden
    from bastion.zoo.architectures import digits_cnn

    folder = tmp_path_factory.mktemp("scan")
    train = load_digits("train")
    x, y, truth = badnets(train.x, train.y, 0.10)
    data = Dataset(x, y, 10)
    cfg = TrainingConfig(epochs=10, validation=0.0, seed=0)
    weights = folder / "backdoored.safetensors"
    harden(digits_cnn(), data, "standard", config=cfg, from_scratch=True).save(weights)
    poisoned = folder / "poisoned.npz"
    np.savez(poisoned, x=data.x.numpy(), y=data.y.numpy(), poisoned=truth.numpy())
    clean = folder / "clean.npz"
    keep = (~truth).numpy()
    np.savez(clean, x=data.x.numpy()[keep], y=data.y.numpy()[keep])
    return folder, weights, poisoned, clean, truth


def test_poisoned_data_is_reported_with_exit_code_1(artifacts):
    # through the real entry point; the other scan-data tests run the command in-process
    folder, weights, poisoned, _, truth = artifacts
    report, kept = folder / "scan.json", folder / "kept.npz"
    res = bastion_process(
        "scan-data", ARCH, f"npz:{poisoned}", "--weights", str(weights), "--method", "spectral",
        "--layer", "5", "--json", str(report), "--clean-out", str(kept),
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "poisoning suspected in class(es) 0" in res.stdout and "recall" in res.stdout
    payload = json.loads(report.read_text())
    assert payload["suspected"] is True and payload["method"] == "spectral"
    assert payload["truth"]["recall"] >= 0.9 and payload["truth"]["false_positive_rate"] <= 0.05
    assert payload["truth"]["n_poisoned"] == int(truth.sum())
    assert [c["label"] for c in payload["classes"] if c["suspicious"]] == [0]
    with np.load(kept, allow_pickle=False) as archive:
        assert archive["x"].shape[0] == len(truth) - payload["n_flagged"]
        assert set(archive["index"].tolist()).isdisjoint(payload["flagged_indices"])


def test_clean_data_exits_0(artifacts):
    _, weights, _, clean, _ = artifacts
    res = bastion(
        "scan-data", ARCH, f"npz:{clean}", "--weights", str(weights), "--layer", "5", "--limit", "800"
    )
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "no sign of poisoning" in res.stdout and "recall" not in res.stdout


def test_limit_keeps_the_truth_aligned(artifacts, tmp_path):
    _, weights, poisoned, _, _ = artifacts
    report = tmp_path / "s.json"
    res = bastion(
        "scan-data", ARCH, f"npz:{poisoned}", "--weights", str(weights), "--method", "ac", "--layer", "5",
        "--limit", "700", "--seed", "3", "--json", str(report),
    )  # fmt: skip
    payload = json.loads(report.read_text())
    assert res.returncode == 1 and payload["n_samples"] == 700
    # A misaligned truth would put clean samples among the flagged ones.
    assert payload["truth"]["precision"] >= 0.9 and payload["truth"]["recall"] >= 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "magic"], "use one of"),
        (["--layer", "fc"], "no layer 'fc'"),
    ],
)
def test_usage_errors_exit_2(artifacts, args, message):
    _, weights, poisoned, _, _ = artifacts
    res = bastion("scan-data", ARCH, f"npz:{poisoned}", "--weights", str(weights), *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert message in res.stderr


def test_help_teaches_exit_codes():
    res = bastion("scan-data", "--help")
    assert res.returncode == 0
    for word in ("Example", "Exit code", "--method", "label-noise", "--clean-out"):
        assert word in res.stdout


@pytest.mark.slow
def test_label_noise_runs_end_to_end(tmp_path):
    report = tmp_path / "ln.json"
    res = bastion(
        "scan-data", "bastion.zoo.architectures:digits_mlp", "digits", "--method", "label-noise",
        "--folds", "2", "--epochs", "2", "--limit", "300", "--json", str(report),
    )  # fmt: skip
    payload = json.loads(report.read_text())
    assert res.returncode == (1 if payload["suspected"] else 0), res.stderr
    assert payload["method"] == "label-noise" and payload["n_samples"] == 300
    assert payload["params"]["folds"] == 2 and payload["params"]["training"]["epochs"] == 2
    assert 0 <= payload["params"]["out_of_fold_agreement"] <= 1
    assert "out-of-fold models agree" in res.stdout
