"""``bastion membership`` end to end: a memorising model saved to disk, the CLI's table, JSON and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import bastion.cli.membership_cmd  # noqa: F401  (registers `membership`)
from bastion.cli.app import app

FACTORY = """
from torch import nn

def net():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A target memorising random labels of 100 digits; 100 held-out and 200 population digits."""
    from bastion.attacks.inference.references import train_reference
    from bastion.data import load_dataset
    from bastion.data.dataset import Dataset
    from bastion.defenses.training.config import TrainingConfig

    root = tmp_path_factory.mktemp("mi")
    (root / "net.py").write_text(FACTORY)
    ds = load_dataset("digits", split="train")
    g = torch.Generator().manual_seed(0)
    x = ds.x[:400]
    y = torch.randint(0, 10, (400,), generator=g)
    paths = {}
    for name, sl in (
        ("members", slice(0, 100)),
        ("non_members", slice(100, 200)),
        ("population", slice(200, 400)),
    ):
        paths[name] = root / f"{name}.npz"
        np.savez(paths[name], x=x[sl].numpy(), y=y[sl].numpy())
    import importlib.util

    spec = importlib.util.spec_from_file_location("mi_net", root / "net.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    members = Dataset(x[:100], y[:100], 10)
    cfg = TrainingConfig(epochs=150, batch_size=32, lr=1e-2)
    result = train_reference(mod.net, members, torch.ones(100, dtype=torch.bool), seed=1, config=cfg)
    paths["weights"], _ = result.save(root / "target.safetensors")
    paths["root"] = root
    return paths


def _args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "membership",
        f"{files['root'] / 'net.py'}:net",
        "--weights",
        str(files["weights"]),
        "--members",
        f"npz:{files['members']}",
        "--non-members",
        f"npz:{files['non_members']}",
        *extra,
    ]


def test_threshold_json_and_roc(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mi.json"
    res = CliRunner().invoke(
        app, _args(files, "--attack", "threshold", "--json", str(out), "--roc", str(tmp_path / "roc.png"))
    )
    assert res.exit_code == 0, res.output
    assert "AUC" in res.output and "TPR" in res.output
    data = json.loads(out.read_text())
    assert data["attack"] == "threshold" and data["queries"] == 200
    assert data["n_members"] == 100 and data["n_non_members"] == 100 and len(data["scores"]) == 200
    assert data["auc"] > 0.9
    assert (tmp_path / "roc.png").stat().st_size > 1000


def test_rmia_with_one_reference_resumes(files: dict[str, Path], tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    args = _args(
        files,
        "--attack",
        "rmia",
        "--references",
        "1",
        "--population",
        f"npz:{files['population']}",
        "--epochs",
        "20",
        "--lr",
        "0.01",
        "--references-dir",
        str(refs),
        "--json",
        str(tmp_path / "a.json"),
    )
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    stamp = (refs / "reference-000.safetensors").stat().st_mtime_ns
    again = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "b.json")])
    assert again.exit_code == 0, again.output
    assert (refs / "reference-000.safetensors").stat().st_mtime_ns == stamp  # resumed, not retrained
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in "ab")
    assert a["scores"] == b["scores"] and a["params"]["references"] == 1
    assert a["queries"] == 200 + a["params"]["z_samples"]


def test_offline_attack_without_population_is_one_line_error(files: dict[str, Path]) -> None:
    res = CliRunner().invoke(app, _args(files, "--attack", "lira-offline"))
    assert res.exit_code == 2
    assert "--population" in res.output


def test_unknown_attack(files: dict[str, Path]) -> None:
    res = CliRunner().invoke(app, _args(files, "--attack", "nope"))
    assert res.exit_code == 2 and "threshold" in res.output


def test_population_overlapping_targets_warns(files: dict[str, Path], tmp_path: Path) -> None:
    args = _args(
        files,
        "--attack",
        "rmia",
        "--references",
        "1",
        "--epochs",
        "1",
        "--population",
        f"npz:{files['members']}",
        "--references-dir",
        str(tmp_path / "refs"),
    )
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "100 example(s) of --population are also targets" in res.output
