"""The audit does not say PASS on nonsense: a factory without --weights (BA109), a model at chance on its
data (BA108), float data in [0, 255] whose range silently became the bounds (BA110)."""

from __future__ import annotations

import json

import numpy as np
from cli_inproc import bastion

SMALL = ["--limit", "60", "--preset", "fast", "--seed", "0", "--no-checks", "--no-curve"]

RANDOM_FACTORY = """
from torch import nn


def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
"""


def findings(out):
    data = json.loads((out / "report.json").read_text())
    return data, {f["code"] for f in data["findings"]}


def test_a_factory_without_weights_fails(tmp_path):
    (tmp_path / "net.py").write_text(RANDOM_FACTORY)
    res = bastion("audit", f"{tmp_path / 'net.py'}:make", "digits", *SMALL, "--out", str(tmp_path / "r"))
    assert res.returncode == 1, res.stdout
    data, codes = findings(tmp_path / "r")
    assert "BA109" in codes and not data["verdict"]["passed"]
    assert data["model"]["source"]["weights_loaded"] is False and data["model"]["source"]["kind"] == "factory"
    assert "verdict: FAIL — " in res.stdout and "BA109" in res.stdout


def test_a_model_at_chance_fails(tmp_path):
    # digits-mlp on digits whose labels are rotated by one: a working model answers the wrong class
    x, y = bastion_digits()
    np.savez(tmp_path / "shifted.npz", x=x, y=(y + 1) % 10)
    res = bastion(
        "audit", "zoo:digits-mlp", f"npz:{tmp_path / 'shifted.npz'}", *SMALL, "--out", str(tmp_path / "r")
    )
    assert res.returncode == 1, res.stdout
    data, codes = findings(tmp_path / "r")
    assert "BA108" in codes and data["clean"]["accuracy"] < 0.2


def test_float_data_in_0_255_fails_until_bounds_are_declared(tmp_path):
    x, y = bastion_digits()
    np.savez(tmp_path / "raw.npz", x=(x * 255).astype(np.float32), y=y)  # float, not uint8: range is a guess
    spec = f"npz:{tmp_path / 'raw.npz'}"
    (tmp_path / "net.py").write_text(SCALED_FACTORY)
    model = f"{tmp_path / 'net.py'}:make"
    res = bastion("audit", model, spec, *SMALL, "--epsilon", "0.03", "--out", str(tmp_path / "r"))
    data, codes = findings(tmp_path / "r")
    assert res.returncode == 1 and "BA110" in codes, res.stdout
    assert data["model"]["source"]["bounds_source"] == "data"
    ok = bastion(
        "audit", model, spec, *SMALL, "--bounds", "0,255", "--epsilon", "8", "--out", str(tmp_path / "d")
    )
    assert "BA110" not in findings(tmp_path / "d")[1], ok.stdout


SCALED_FACTORY = """
import torch
from bastion import zoo


class Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = zoo.load("digits-mlp").module

    def forward(self, x):
        return self.net(x / 255.0)


def make():
    return Scaled()  # a bare module: its bounds come from --bounds, or else from the data
"""


def bastion_digits():
    from bastion.data import load_dataset

    ds = load_dataset("digits", split="test")
    return ds.x.numpy().reshape(len(ds), 8, 8), ds.y.numpy()
