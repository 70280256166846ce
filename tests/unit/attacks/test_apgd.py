"""APGD: the paper's checkpoint schedule, strength against PGD, APGD-T, targets, l2, determinism, cost."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.evasion.apgd import APGD, checkpoints
from bastion.attacks.evasion.pgd import PGD
from bastion.errors import AttackError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

MODERATE = {"linf": 0.1, "l2": 0.5}


def test_checkpoints_follow_the_paper_schedule():
    # p_j = 0, .22, .41, .57, .70, .80, .87, .93, .99 (steps shrink by .03 down to .06); w_j = ceil(p_j * N).
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert all(0 < w < 5 for w in checkpoints(5))


class _Bowl(nn.Module):
    """Logits (0, -10 ||x - c||^2): class 0's loss peaks at ``c``, where the model is still right."""

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("c", c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1 = -10 * ((x.flatten(1) - self.c) ** 2).sum(1)
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.2)])
def test_step_size_halving_converges_to_an_interior_maximum(norm, eps):
    # The loss maximum c lies inside every ball (at eps / 2 from x): steps of the initial size 2 * eps only
    # bounce around it, so APGD gets close to c only if its checkpoints halve the step size.
    g = torch.Generator().manual_seed(0)
    c = 0.4 + 0.2 * torch.rand(8, generator=g)
    offset = torch.randn(16, 8, generator=g)
    scale = offset.abs().amax(1, keepdim=True) if norm == "linf" else offset.norm(dim=1, keepdim=True)
    x, y = c + offset / scale * eps / 2, torch.zeros(16, dtype=torch.long)
    result = APGD(steps=100)(TorchClassifier(_Bowl(c), num_classes=2), x, y, ThreatModel(norm, eps))
    gap = result.x_adv - c
    dist = gap.abs().amax(1) if norm == "linf" else gap.norm(dim=1)
    assert not bool(result.success.any())
    assert float(dist.max()) < 0.05 * eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_is_at_least_as_strong_as_pgd40(digits_model, digits_batch, norm, loss):
    x, y = digits_batch
    threat = ThreatModel(norm, MODERATE[norm])
    apgd = APGD(loss=loss)(digits_model, x, y, threat, seed=0)
    pgd = PGD(steps=40, loss=loss)(digits_model, x, y, threat, seed=0)
    assert int(apgd.success.sum()) >= int(pgd.success.sum()) - 1
    assert bool(threat.contains(x, apgd.x_adv).all())
    assert apgd.gradient_evals <= 101 * x.shape[0]


def test_apgd_maximises_the_loss_better_than_pgd_where_both_fail(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", 0.05)
    apgd = APGD(loss="ce")(digits_model, x, y, threat, seed=0)
    pgd = PGD(steps=40)(digits_model, x, y, threat, seed=0)
    both_fail = ~(apgd.success | pgd.success)
    assert int(both_fail.sum()) >= 10
    with torch.no_grad():
        loss_apgd = F.cross_entropy(digits_model(apgd.x_adv[both_fail]), y[both_fail])
        loss_pgd = F.cross_entropy(digits_model(pgd.x_adv[both_fail]), y[both_fail])
    assert float(loss_apgd) >= float(loss_pgd)


def test_apgd_t_breaks_inputs_untargeted(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", MODERATE["linf"])
    apgd_t = APGD(loss="dlr", targeted=True, steps=50, n_target_classes=3)(digits_model, x, y, threat)
    apgd_ce = APGD(loss="ce", steps=50)(digits_model, x, y, threat)
    assert apgd_t.success_rate > 0
    assert torch.equal(apgd_t.success, apgd_t.predictions != y)
    assert int(apgd_t.success.sum()) >= int(apgd_ce.success.sum()) - 1
    # At most n_target_classes rounds of (steps + 1) evaluations per sample.
    assert apgd_t.gradient_evals <= 3 * 51 * x.shape[0]


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_with_targets_hits_them(digits_model, digits_batch, loss):
    x, y = digits_batch
    targets = (y + 5) % 10
    result = APGD(loss=loss, steps=50)(digits_model, x, y, ThreatModel("linf", 0.3), targets=targets)
    assert torch.equal(result.success, result.predictions == targets)
    assert result.success_rate >= 0.9


def test_apgd_l2_breaks_everything_at_a_large_radius(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("l2", 2.0)
    result = APGD(steps=50)(digits_model, x, y, threat)
    assert result.success_rate == 1.0
    assert bool((result.distance <= 2.0 * (1 + 1e-5)).all())


def test_apgd_is_deterministic_for_a_seed(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", MODERATE["linf"])
    attack = APGD(loss="dlr", targeted=True, steps=20, n_target_classes=2)
    a = attack(digits_model, x, y, threat, seed=7)
    b = attack(digits_model, x, y, threat, seed=7)
    c = attack(digits_model, x, y, threat, seed=8)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)  # the random start does depend on the seed


def test_restarts_only_add_successes(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("l2", MODERATE["l2"])
    one = APGD(steps=20)(digits_model, x, y, threat, seed=2)
    three = APGD(steps=20, restarts=3)(digits_model, x, y, threat, seed=2)
    assert not bool((one.success & ~three.success).any())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": "margin"},
        {"steps": 0},
        {"restarts": 0},
        {"rho": 0.0},
        {"rho": 1.5},
        {"n_target_classes": 0},
        {"eot_samples": 0},
    ],
)
def test_invalid_hyperparameters_raise(kwargs):
    with pytest.raises(AttackError):
        APGD(**kwargs)
