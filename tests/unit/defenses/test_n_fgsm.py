"""N-FGSM training (de Jorge et al. 2022): noisy start, one signed step, no projection onto the ball."""

from __future__ import annotations

import json

import pytest
import torch

from bastion.defenses.training import METHODS, NFGSM, Batch
from bastion.errors import DefenseError
from bastion.threat import ThreatModel

THREAT = ThreatModel("linf", 0.1)


class _Recorder:
    """A linear 'network' whose class-0 logit is -sum(x): for y = 0 the cross-entropy gradient is
    positive in every coordinate, so the signed step is +step_size everywhere (a known answer)."""

    def __init__(self) -> None:
        self.attack_inputs: list[torch.Tensor] = []
        self.train_inputs: list[torch.Tensor] = []

    @staticmethod
    def _logits(x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1, keepdim=True)
        return torch.cat([-s, torch.zeros(len(x), 9, dtype=x.dtype, device=x.device)], dim=1)

    def attack(self, x: torch.Tensor) -> torch.Tensor:
        self.attack_inputs.append(x.detach().clone())
        return self._logits(x)

    def train(self, x: torch.Tensor) -> torch.Tensor:
        self.train_inputs.append(x.detach().clone())
        return self._logits(x)


def _step(x, threat=THREAT, seed=0, **options):
    rec = _Recorder()
    y = torch.zeros(len(x), dtype=torch.long)
    batch = Batch(x, y, threat, torch.Generator().manual_seed(seed), progress=0.0)
    loss, logits = NFGSM(**options).loss(rec.train, rec.attack, batch)
    return rec, loss, logits


def test_known_answer_noise_plus_one_signed_step_not_projected():
    x = torch.full((32, 1, 8, 8), 0.5)
    original = x.clone()
    rec, loss, logits = _step(x)
    # The same generator gives the same noise: x + U(-2 eps, 2 eps), then + eps (gradient sign +1).
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    noisy = x + 2 * 0.1 * (2 * u - 1)
    assert len(rec.attack_inputs) == 1 and torch.allclose(rec.attack_inputs[0], noisy)
    assert len(rec.train_inputs) == 1 and torch.allclose(rec.train_inputs[0], noisy + 0.1, atol=1e-6)
    delta = (rec.train_inputs[0] - x).abs()
    assert float(delta.max()) <= 3 * 0.1 + 1e-6  # (k + 1) * eps
    assert float((delta > 0.1 + 1e-3).float().mean()) > 0.3  # outside the eps-ball: not projected
    assert float(delta.max()) > 0.28  # the noise really reaches k * eps
    assert torch.equal(x, original)  # the caller's batch is untouched
    assert logits.shape == (32, 10) and loss.ndim == 0 and torch.isfinite(loss)


def test_stays_inside_bounds_and_options_scale_the_reach():
    x = torch.cat([torch.zeros(16, 1, 8, 8), torch.ones(16, 1, 8, 8)])  # saturated pixels, as MNIST's
    rec, _, _ = _step(x, noise_magnitude=1.0, step_size=0.05)
    x_train = rec.train_inputs[0]
    assert float(x_train.min()) >= 0.0 and float(x_train.max()) <= 1.0
    # The gradient is taken at the unclipped noisy point (outside the bounds on the zeros).
    assert float(rec.attack_inputs[0].min()) < -0.05
    assert float((x_train - x).abs().max()) <= 0.1 + 0.05 + 1e-6
    # k = 0 is FGSM from the clean point at step eps: every coordinate moves by exactly eps (or clips).
    mid = torch.full((4, 1, 8, 8), 0.5)
    rec, _, _ = _step(mid, noise_magnitude=0.0)
    assert torch.allclose(rec.train_inputs[0], mid + 0.1)


def test_follows_the_ramped_epsilon():
    x = torch.full((16, 1, 8, 8), 0.5)
    rec, _, _ = _step(x, threat=THREAT.with_epsilon(0.02))  # the loop passes the warm-up's epsilon
    assert float((rec.train_inputs[0] - x).abs().max()) <= 3 * 0.02 + 1e-6


def test_seeded_generator_determines_the_perturbation():
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    rng = torch.get_rng_state()
    a, _, _ = _step(x, seed=5)
    b, _, _ = _step(x, seed=5)
    c, _, _ = _step(x, seed=6)
    assert torch.equal(a.train_inputs[0], b.train_inputs[0])
    assert not torch.equal(a.train_inputs[0], c.train_inputs[0])
    assert torch.equal(torch.get_rng_state(), rng)  # only the given generator is consumed


def test_errors_name_the_fix():
    x = torch.full((4, 1, 8, 8), 0.5)
    with pytest.raises(DefenseError, match="linf"):
        _step(x, threat=ThreatModel("l2", 1.0))
    with pytest.raises(DefenseError, match="noise_magnitude"):
        NFGSM(noise_magnitude=-1.0)
    with pytest.raises(DefenseError, match="step_size"):
        NFGSM(step_size=0.0)
    with pytest.raises(DefenseError, match="needs a threat model"):
        _step(x, threat=None)
    assert METHODS["n-fgsm"] is NFGSM and NFGSM().params() == {"noise_magnitude": 2.0, "step_size": None}


def test_cli_passes_the_noise_magnitude(tmp_path):
    from typer.testing import CliRunner

    from bastion.cli import harden_cmd  # registers `harden` on the app

    app = harden_cmd.app

    out = tmp_path / "m.safetensors"
    res = CliRunner().invoke(
        app,
        ["harden", "zoo:digits-mlp", "digits", "--method", "n-fgsm", "--epsilon", "0.2",
         "--noise-magnitude", "1.5", "--epochs", "1", "--limit", "300", "--eval-limit", "0",
         "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["method"] == "n-fgsm" and card["method_options"] == {
        "noise_magnitude": 1.5,
        "step_size": None,
    }
