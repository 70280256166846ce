"""ATTA training (Zheng et al. 2020): each sample's perturbation carries over to its next visit."""

from __future__ import annotations

import json

import pytest
import torch

from bastion.defenses.training import ATTA, METHODS, Batch
from bastion.errors import DefenseError
from bastion.threat import ThreatModel

THREAT = ThreatModel("linf", 0.1)


def _logits(x: torch.Tensor) -> torch.Tensor:
    """Class-0 logit -sum(x): for y = 0 every coordinate's gradient sign is +1 (a known answer)."""
    s = x.flatten(1).sum(1, keepdim=True)
    return torch.cat([-s, torch.zeros(len(x), 9, dtype=x.dtype)], dim=1)


class _Recorder:
    def __init__(self) -> None:
        self.train_inputs: list[torch.Tensor] = []

    def train(self, x: torch.Tensor) -> torch.Tensor:
        self.train_inputs.append(x.detach().clone())
        return _logits(x)


def _visit(objective, x, index, size=8, threat=THREAT, seed=0):
    rec = _Recorder()
    y = torch.zeros(len(x), dtype=torch.long)
    batch = Batch(x, y, threat, torch.Generator().manual_seed(seed), 0.0, 1.0, index, size)
    loss, logits = objective.loss(rec.train, _logits, batch)
    assert logits.shape == (len(x), 10) and loss.ndim == 0 and torch.isfinite(loss)
    return rec.train_inputs[0]


def test_perturbations_accumulate_across_visits_and_stay_in_the_ball():
    x = torch.full((4, 1, 6, 6), 0.5)
    index = torch.tensor([0, 2, 4, 6])
    atta = ATTA(step_size=0.03)
    first = _visit(atta, x, index)
    # First visit: a uniform start in the ball, then one +0.03 step, projected.
    start = (x + 0.1 * (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 1)).clamp(0, 1)
    assert torch.allclose(first, (start + 0.03).clamp(0.4, 0.6), atol=1e-6)
    # Each later visit continues from the stored point (float16 storage: rounding only), one step further.
    previous = first
    for visit in range(1, 4):
        now = _visit(atta, x, index, seed=visit)
        assert torch.allclose(now, (previous + 0.03).clamp(0.4, 0.6), atol=2e-3)
        previous = now
    assert float((previous - x).abs().max()) <= 0.1 + 1e-6
    # After enough visits every coordinate sits on the surface: one-step visits add up to a many-step attack.
    for visit in range(4, 8):
        previous = _visit(atta, x, index, seed=visit)
    assert torch.allclose(previous, x + 0.1, atol=2e-3)


def test_samples_keep_their_own_state_and_bind_resets_it():
    x = torch.full((2, 1, 4, 4), 0.5)
    atta = ATTA(step_size=0.05)
    for seed in range(3):
        _visit(atta, x, torch.tensor([1, 3]), size=4, seed=seed)
    # Samples 0 and 2 were never visited: their first visit is a fresh random start plus one step.
    fresh = _visit(atta, x, torch.tensor([0, 2]), size=4, seed=9)
    carried = _visit(atta, x, torch.tensor([1, 3]), size=4, seed=9)
    assert torch.allclose(carried, x + 0.1, atol=2e-3)
    assert float((fresh - x).min()) < 0.09  # not yet at the surface everywhere
    atta.bind(torch.nn.Identity(), lambda t: t)
    again = _visit(atta, x, torch.tensor([1, 3]), size=4, seed=9)
    assert torch.allclose(again, fresh, atol=1e-6)  # same generator, fresh state: the same first visit


def test_follows_the_warm_up_and_the_bounds():
    x = torch.cat([torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)])
    atta = ATTA()
    big = _visit(atta, x, torch.arange(4), size=4, threat=ThreatModel("linf", 0.3))
    assert float(big.min()) >= 0.0 and float(big.max()) <= 1.0
    small = _visit(atta, x, torch.arange(4), size=4, threat=ThreatModel("linf", 0.02))
    assert float((small - x).abs().max()) <= 0.02 + 1e-6  # a stored 0.3 perturbation is projected


def test_l2_threat_stays_in_the_ball():
    x = torch.full((3, 1, 5, 5), 0.5)
    threat = ThreatModel("l2", 0.5)
    atta = ATTA(step_size=0.2)
    for seed in range(5):
        out = _visit(atta, x, torch.arange(3), size=3, threat=threat, seed=seed)
        assert bool(threat.contains(x, out).all())
    assert float((out - x).flatten(1).norm(dim=1).min()) > 0.49  # the steps compound to the surface


def test_errors_name_the_fix():
    x = torch.full((2, 1, 4, 4), 0.5)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(DefenseError, match="sample positions"):
        ATTA().loss(_logits, _logits, Batch(x, y, THREAT, torch.Generator(), 0.0))
    with pytest.raises(DefenseError, match="step_size"):
        ATTA(step_size=-0.1)
    with pytest.raises(DefenseError, match="steps"):
        ATTA(steps=0)
    with pytest.raises(DefenseError, match="finite epsilon"):
        _visit(ATTA(), x, torch.arange(2), size=2, threat=ThreatModel("linf", float("inf")))
    with pytest.raises(DefenseError, match="needs a threat model"):
        ATTA().loss(_logits, _logits, Batch(x, y, None, torch.Generator(), 0.0, 1.0, torch.arange(2), 2))
    assert METHODS["atta"] is ATTA and ATTA().params() == {"step_size": None, "steps": 1}


def test_cli_trains_atta(tmp_path):
    from typer.testing import CliRunner

    from bastion.cli import harden_cmd  # registers `harden` on the app

    out = tmp_path / "m.safetensors"
    res = CliRunner().invoke(
        harden_cmd.app,
        ["harden", "zoo:digits-mlp", "digits", "--method", "atta", "--epsilon", "0.2", "--step-size",
         "0.05", "--epochs", "1", "--limit", "300", "--eval-limit", "0", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["method"] == "atta" and card["method_options"] == {"step_size": 0.05, "steps": 1}
