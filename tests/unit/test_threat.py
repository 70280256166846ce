import math

import pytest
import torch

from bastion import Norm, ThreatModel, ThreatModelError


@pytest.mark.parametrize("alias", ["linf", "Linf", "L_INF", "inf", math.inf, Norm.LINF])
def test_norm_aliases_linf(alias):
    assert ThreatModel(alias, 0.1).norm is Norm.LINF


@pytest.mark.parametrize("alias", ["l2", "L2", 2, "2", Norm.L2])
def test_norm_aliases_l2(alias):
    assert ThreatModel(alias, 0.1).norm is Norm.L2


@pytest.mark.parametrize("eps", [0, -0.1, float("nan"), "abc"])
def test_bad_epsilon_rejected(eps):
    with pytest.raises(ThreatModelError, match="epsilon"):
        ThreatModel("linf", eps)


@pytest.mark.parametrize("bounds", [(1, 0), (0, 0), (0, math.inf), (math.nan, 1), (0,)])
def test_bad_bounds_rejected(bounds):
    with pytest.raises(ThreatModelError, match="bounds"):
        ThreatModel("linf", 0.1, bounds=bounds)


def test_unknown_norm_lists_valid():
    with pytest.raises(ThreatModelError, match="linf, l2"):
        ThreatModel("l1", 0.1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-2.0, 3.0), (0.0, 255.0)])
def test_projection_lands_in_ball_and_bounds(norm, bounds):
    g = torch.Generator().manual_seed(0)
    low, high = bounds
    x = low + (high - low) * torch.rand(64, 3, 5, 5, generator=g)
    far = x + (high - low) * 3 * torch.randn(x.shape, generator=g)
    threat = ThreatModel(norm, 0.05 * (high - low), bounds=bounds)
    p = threat.project(x, far)
    assert bool(threat.contains(x, p).all())
    assert float(p.min()) >= low and float(p.max()) <= high
    assert bool((threat.distance(x, p) <= threat.epsilon * (1 + 1e-5)).all())


def test_projection_is_identity_inside():
    x = torch.full((4, 10), 0.5)
    inside = x + 0.01
    threat = ThreatModel("l2", 1.0)
    assert torch.equal(threat.project(x, inside), inside)


def test_linf_projection_is_the_euclidean_projection_onto_the_box():
    x = torch.tensor([[0.5, 0.95, 0.1]])
    target = torch.tensor([[0.9, 1.5, -0.5]])
    p = ThreatModel("linf", 0.2).project(x, target)
    assert torch.allclose(p, torch.tensor([[0.7, 1.0, 0.0]]))


def test_l2_projection_scales_onto_sphere():
    x = torch.zeros(1, 4) + 0.5
    target = x + torch.tensor([[0.3, 0.4, 0.0, 0.0]])  # norm 0.5
    p = ThreatModel("l2", 0.25).project(x, target)
    assert torch.allclose(p - x, torch.tensor([[0.15, 0.2, 0.0, 0.0]]), atol=1e-6)


def test_distance_values():
    x = torch.zeros(2, 1, 2, 2)
    xa = x.clone()
    xa[0, 0, 0, 0] = 0.3
    xa[1, 0, 1, 1] = -0.4
    xa[1, 0, 0, 0] = 0.3
    assert torch.allclose(ThreatModel("linf", 1).distance(x, xa), torch.tensor([0.3, 0.4]))
    assert torch.allclose(ThreatModel("l2", 1).distance(x, xa), torch.tensor([0.3, 0.5]))


def test_contains_rejects_outside():
    x = torch.full((2, 3), 0.5)
    xa = x.clone()
    xa[1, 0] = 0.7
    assert ThreatModel("linf", 0.1).contains(x, xa).tolist() == [True, False]
    xb = x.clone()
    xb[0, 0] = 1.2  # out of bounds, but inside an unbounded ball
    assert ThreatModel("linf", math.inf).contains(x, xb).tolist() == [False, True]


def test_unbounded_only_clips_to_bounds():
    threat = ThreatModel("l2", math.inf)
    assert threat.unbounded
    x = torch.full((1, 3), 0.5)
    assert torch.equal(threat.project(x, torch.tensor([[2.0, -1.0, 0.9]])), torch.tensor([[1.0, 0.0, 0.9]]))


def test_frozen_and_with_epsilon():
    threat = ThreatModel("linf", 0.1)
    with pytest.raises(AttributeError):
        threat.epsilon = 0.2  # type: ignore[misc]
    assert threat.with_epsilon(0.3).epsilon == 0.3 and threat.epsilon == 0.1
    assert "linf eps=0.1" in str(threat)
