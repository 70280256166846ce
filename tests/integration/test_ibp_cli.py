"""IBP refusing a network from the command line: ``certify --method ibp`` and ``harden --method ibp`` exit
2 with one actionable line naming the layer; ``audit --certify ibp`` records the refusal and goes on."""

from __future__ import annotations

import json

import pytest
from cli_inproc import bastion

RESIDUAL_FACTORY = """
import torch
from torch import nn


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def make():
    torch.manual_seed(0)
    block = Residual(nn.Linear(32, 32), nn.ReLU())
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), block, nn.Linear(32, 10))
"""

REFUSAL = "IBP cannot bound layer '2' (Residual): the subclass of Sequential defines forward"


def _one_line_refusal(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert REFUSAL in lines[0]


def test_certify_and_harden_refuse_with_one_line(tmp_path):
    factory = tmp_path / "residual.py"
    factory.write_text(RESIDUAL_FACTORY)
    res = bastion(
        "certify", f"{factory}:make", "digits", "--method", "ibp", "--epsilon", "0.01", "--limit", "5"
    )
    assert res.returncode == 2
    _one_line_refusal(res.stderr)
    res = bastion(
        "harden", f"{factory}:make", "digits", "--method", "ibp", "--epsilon", "0.1", "--epochs", "1",
        "--out", str(tmp_path / "h.safetensors"),
    )  # fmt: skip
    assert res.returncode == 2
    _one_line_refusal(res.stderr)
    assert not (tmp_path / "h.safetensors").exists()


@pytest.mark.slow  # a whole audit; tests/unit/audit covers the recorded refusal in-process
def test_audit_records_the_refusal(tmp_path):
    factory = tmp_path / "residual.py"
    factory.write_text(RESIDUAL_FACTORY)
    out = tmp_path / "r"
    res = bastion(
        "audit", f"{factory}:make", "digits", "--limit", "10", "--preset", "fast", "--seed", "0",
        "--no-checks", "--no-curve", "--epsilon", "0.01", "--certify", "ibp", "--out", str(out),
    )  # fmt: skip
    # the untrained residual net is at chance (BA108, high): the audit fails it, and still records the refusal
    assert res.returncode == 1 and "BA108" in res.stdout, res.stderr
    cert = json.loads((out / "report.json").read_text())["certification"]
    assert REFUSAL in cert["refused"]
    assert cert["threats"][0]["status"] == "refused"
