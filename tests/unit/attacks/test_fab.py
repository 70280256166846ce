"""FAB / FAB-T: the hyperplane projection against closed forms, the minimum norm on linear models, the
budget contract, errors."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.attacks import get
from bastion.attacks.evasion.fab import FAB, project_onto_hyperplane
from bastion.errors import AttackError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel
from conftest import LinearNet


def _plane(n: int = 8, d: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 0.4 + 0.2 * torch.rand(n, d, generator=g)
    w = torch.randn(n, d, generator=g)
    b = 0.1 * torch.randn(n, generator=g)
    return x, w, b


@pytest.mark.parametrize("linf", [False, True])
def test_projection_matches_the_closed_form_when_the_bounds_do_not_bind(linf):
    x, w, b = _plane()
    delta = project_onto_hyperplane(x, w, b, -10.0, 10.0, linf)
    # l2: -b w / ||w||^2; linf: -b sign(w) / ||w||_1
    expected = -b[:, None] * (
        w.sign() / w.abs().sum(1, keepdim=True) if linf else w / (w * w).sum(1, keepdim=True)
    )
    assert torch.allclose(delta, expected, atol=1e-6)
    assert torch.allclose((w * delta).sum(1) + b, torch.zeros_like(b), atol=1e-5)


@pytest.mark.parametrize("linf", [False, True])
def test_projection_with_binding_bounds_is_feasible_and_no_feasible_point_is_smaller(linf):
    x, w, b = _plane(n=4, d=6, seed=3)
    b = b * 20  # far planes: the box binds several coordinates
    low, high = 0.0, 1.0
    delta = project_onto_hyperplane(x, w, b, low, high, linf)
    reach = (w * delta).sum(1) + b
    assert bool(((x + delta) >= low - 1e-6).all() and ((x + delta) <= high + 1e-6).all())
    reachable = reach.abs() < 1e-4
    assert bool(reachable.any())
    norm = delta.abs().amax(1) if linf else delta.norm(dim=1)
    # random feasible points on the plane (the box corner direction, rescaled) are never smaller
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        z = torch.rand(x.shape, generator=g) * (high - low) + low - x  # a feasible delta
        s = -b / (w * z).sum(1)
        ok = (s > 0) & (s <= 1) & reachable  # z * s stays in the box (it's convex and holds 0)
        cand = z * s[:, None]
        cand_norm = cand.abs().amax(1) if linf else cand.norm(dim=1)
        assert bool((norm[ok] <= cand_norm[ok] + 1e-5).all())


def test_unreachable_plane_moves_every_coordinate_as_far_as_it_can():
    x = torch.full((1, 4), 0.5)
    w = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    b = torch.tensor([-100.0])  # needs <w, delta> = 100: impossible inside [0, 1]
    delta = project_onto_hyperplane(x, w, b, 0.0, 1.0, linf=True)
    assert torch.allclose(delta, torch.tensor([[0.5, -0.5, 0.5, 0.0]]))


def _linear(classes: int, dim: int, seed: int) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    model = TorchClassifier(
        LinearNet(torch.randn(classes, dim, generator=g), 0.1 * torch.randn(classes, generator=g)),
        bounds=(-10.0, 10.0),
        num_classes=classes,
    )
    x = torch.rand(30, dim, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def _closest(model: TorchClassifier, x: torch.Tensor, y: torch.Tensor, dual: float) -> torch.Tensor:
    """min over j != y of (f_y - f_j)(x) / ||w_y - w_j||_dual: the exact minimum (wide bounds)."""
    weight = model.module.linear.weight.detach()
    with torch.no_grad():
        logits = model(x)
    gap = logits.gather(1, y[:, None]) - logits
    dist = gap / (weight[y][:, None, :] - weight[None]).norm(p=dual, dim=2).clamp_min(1e-12)
    return dist.scatter(1, y[:, None], math.inf).amin(1)


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_untargeted_fab_finds_the_closest_boundary_of_a_linear_model(norm, dual):
    model, x, y = _linear(10, 32, seed=1)
    res = FAB()(model, x, y, ThreatModel(norm, math.inf, bounds=(-10.0, 10.0)))
    assert bool(res.success.all())
    ratio = res.distance / _closest(model, x, y, dual)
    assert float(ratio.min()) >= 1 - 1e-4, "cannot beat the exact minimum"
    assert float(ratio.max()) <= 1.01


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
def test_fab_t_on_two_classes_is_the_binary_minimum(linear_binary, norm, dual):
    model, x, y = linear_binary
    weight, bias = model.module.linear.weight.detach(), model.module.linear.bias.detach()
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    exact = (x @ w + b).abs() / w.norm(p=dual)
    res = get("fab-t")(model, x, y, ThreatModel(norm, math.inf))
    assert bool(res.success.all())
    ratio = res.distance / exact
    assert float(ratio.min()) >= 1 - 1e-4 and float(ratio.max()) <= 1.01


def test_no_success_below_the_minimum_and_inputs_come_back(linear_binary):
    model, x, y = linear_binary
    weight, bias = model.module.linear.weight.detach(), model.module.linear.bias.detach()
    w, b = weight[1] - weight[0], bias[1] - bias[0]
    eps = 0.9 * float(((x @ w + b).abs() / w.norm(p=1)).min())
    res = FAB()(model, x, y, ThreatModel("linf", eps))
    assert not bool(res.success.any())
    assert torch.equal(res.x_adv, x)


def test_a_finite_budget_stops_each_input_once_it_is_broken_inside_it():
    model, x, y = _linear(10, 32, seed=2)
    threat = ThreatModel("linf", 10.0, bounds=(-10.0, 10.0))  # everything falls at once
    res = FAB(steps=100)(model, x, y, threat)
    assert bool(res.success.all())
    # the first step breaks each input (overshoot 1.05), so it needs ~2 gradient passes per class, not 100
    assert res.gradient_evals <= 3 * 10 * x.shape[0]


def test_fab_t_differentiates_one_logit_difference_untargeted_fab_every_class():
    model, x, y = _linear(10, 32, seed=2)
    threat = ThreatModel("l2", 1e-3, bounds=(-10.0, 10.0))  # nothing breaks: every step runs
    targeted = FAB(targeted=True, steps=4, n_target_classes=2)(model, x, y, threat)
    untargeted = FAB(steps=4)(model, x, y, threat)
    assert not bool(targeted.success.any() or untargeted.success.any())
    # per step and input: one backward pass (two after a backward step), vs one per class
    n = x.shape[0]
    assert 2 * 5 * n <= targeted.gradient_evals <= 2 * 2 * 5 * n
    assert 10 * 5 * n <= untargeted.gradient_evals <= 2 * 10 * 5 * n


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": 0}, {"restarts": 0}, {"n_target_classes": 0}, {"alpha_max": 0}, {"beta": 1.5}, {"eta": 0.5}],
)
def test_invalid_hyperparameters_raise(kwargs):
    with pytest.raises(AttackError):
        FAB(**kwargs)


def test_restarts_never_lose_the_best_adversarial(digits_model, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("l2", math.inf)
    one = FAB(steps=20)(digits_model, x[:8], y[:8], threat, seed=0)
    more = FAB(steps=20, restarts=3)(digits_model, x[:8], y[:8], threat, seed=0)
    assert bool(more.success[one.success].all())
    both = one.success & more.success
    assert bool((more.distance[both] <= one.distance[both] + 1e-6).all())
