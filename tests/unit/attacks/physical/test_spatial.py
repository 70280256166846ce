"""Spatial attacks (Engstrom et al., ICML 2019): known answers of the transform, the base class's
guarantee, grid search against brute force on a toy model, and the three attacks on digits-cnn."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bastion.attacks.physical import (
    GridSearch,
    SpatialAttack,
    SpatialFirstOrder,
    SpatialResult,
    SpatialThreat,
    WorstOfK,
    spatial_transform,
)
from bastion.errors import AttackError, DataError, ThreatModelError
from bastion.model import Classifier, TorchClassifier


def _images(n: int = 3, c: int = 2, h: int = 8, w: int = 8, bounds: tuple[float, float] = (0.0, 1.0)):
    low, high = bounds
    return low + (high - low) * torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- the transform: known answers


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0)])
def test_zero_params_are_the_identity(bounds: tuple[float, float]) -> None:
    x = _images(bounds=bounds, h=7, w=10)
    out = spatial_transform(x, torch.zeros(3, 3), bounds)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.allclose(out, x, atol=1e-6)


@pytest.mark.parametrize("side", [6, 8])
def test_ninety_degrees_is_rot90_counter_clockwise(side: int) -> None:
    # Positive angles turn the content counter-clockwise on screen: torch.rot90(k=1) over (H, W).
    x = _images(h=side, w=side)
    out = spatial_transform(x, torch.tensor([[90.0, 0, 0], [-90.0, 0, 0], [180.0, 0, 0]]))
    assert torch.allclose(out[0], torch.rot90(x[0], 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(out[1], torch.rot90(x[1], -1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(out[2], torch.rot90(x[2], 2, dims=(-2, -1)), atol=1e-5)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0)])
def test_integer_translation_shifts_and_fills_with_the_low_bound(bounds: tuple[float, float]) -> None:
    low = bounds[0]
    x = _images(n=2, h=8, w=10, bounds=bounds)
    # +2 px right, +1 px down; then -3 px left, -2 px up
    params = torch.tensor([[0.0, 2 / 10, 1 / 8], [0.0, -3 / 10, -2 / 8]])
    out = spatial_transform(x, params, bounds)
    want = torch.full_like(x, low)
    want[0, :, 1:, 2:] = x[0, :, :-1, :-2]
    want[1, :, :-2, :-3] = x[1, :, 2:, 3:]
    assert torch.allclose(out, want, atol=1e-6)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0)])
def test_outputs_stay_inside_bounds_and_x_is_not_mutated(bounds: tuple[float, float]) -> None:
    x = _images(n=64, bounds=bounds)
    x[:, :, 0, :] = bounds[1]  # values at the edge of the bounds
    before = x.clone()
    threat = SpatialThreat(180.0, 0.5, bounds)
    params = threat.sample(64, torch.Generator().manual_seed(1))
    out = spatial_transform(x, params, bounds)
    assert torch.equal(x, before)
    assert float(out.min()) >= bounds[0] and float(out.max()) <= bounds[1]


def test_transform_is_differentiable_in_params_and_x() -> None:
    x = _images(n=2).requires_grad_(True)
    params = torch.tensor([[10.0, 0.05, -0.03], [-20.0, 0.1, 0.02]], requires_grad=True)
    spatial_transform(x, params).square().sum().backward()
    assert params.grad is not None and x.grad is not None
    assert bool(torch.isfinite(params.grad).all()) and float(params.grad.abs().sum()) > 0
    assert float(x.grad.abs().sum()) > 0


def test_transform_rejects_malformed_inputs() -> None:
    with pytest.raises(DataError, match="N, C, H, W"):
        spatial_transform(torch.rand(2, 64), torch.zeros(2, 3))
    with pytest.raises(DataError, match="N, 3"):
        spatial_transform(torch.rand(2, 1, 8, 8), torch.zeros(2, 2))
    with pytest.raises(DataError, match="one per image"):
        spatial_transform(torch.rand(2, 1, 8, 8), torch.zeros(3, 3))


# ---------------------------------------------------------------- the threat


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_rotation": -1.0}, ">= 0"),
        ({"max_translation": -0.1}, ">= 0"),
        ({"max_rotation": 181.0}, "<= 180"),
        ({"max_translation": 1.0}, "< 1"),
        ({"max_rotation": math.nan}, "finite"),
        ({"bounds": (1.0, 0.0)}, "low < high"),
    ],
)
def test_threat_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ThreatModelError, match=match):
        SpatialThreat(**kwargs)


def test_clamp_and_contains() -> None:
    threat = SpatialThreat(30.0, 0.1)
    params = torch.tensor([[45.0, 0.0, 0.0], [-10.0, -0.5, 0.05], [29.0, 0.1, -0.1]])
    assert threat.contains(params).tolist() == [False, False, True]
    clamped = threat.clamp(params)
    assert torch.allclose(clamped, torch.tensor([[30.0, 0.0, 0.0], [-10.0, -0.1, 0.05], [29.0, 0.1, -0.1]]))
    assert bool(threat.contains(clamped).all())


# ---------------------------------------------------------------- a toy model: where is the mass?


class _MassSide(nn.Module):
    """Class 1 when the image's mass sits right of the centre column, class 0 when left."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.arange(8.0).sub(3.5).repeat(8, 1).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w
        return torch.stack([-s, s], dim=1)


def _blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs at different (row, column) centres on 8x8 images, labelled by side."""
    centres = [(3.2, 2.6), (4.1, 4.4), (2.3, 1.0), (5.7, 6.2), (3.9, 3.2), (1.4, 4.9), (6.1, 0.7), (4.6, 3.8)]
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    x = torch.stack([torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 1.5) for r, c in centres]).unsqueeze(1)
    y = torch.tensor([int(c > 3.5) for _, c in centres])
    return x, y


@pytest.fixture(scope="module")
def toy() -> Classifier:
    return TorchClassifier(_MassSide(), num_classes=2)


def test_grid_search_matches_brute_force_over_the_same_grid(toy: Classifier) -> None:
    x, y = _blobs()
    threat = SpatialThreat(30.0, 0.125)
    angles = torch.linspace(-30.0, 30.0, 7)
    shifts = torch.linspace(-0.125, 0.125, 3)
    grid = torch.cartesian_prod(angles, shifts, shifts)
    with torch.no_grad():
        correct = toy(x).argmax(1) == y
        fooled_any = torch.stack(
            [toy(spatial_transform(x, p.expand(len(x), 3))).argmax(1) != y for p in grid], dim=1
        ).any(dim=1)
    want = correct & fooled_any
    assert 0 < int(want.sum()) < len(x)  # the toy has both flippable and robust inputs
    result = GridSearch(angles=7, translations=3, batch_size=50)(toy, x, y, threat)
    assert result.success.tolist() == want.tolist()
    assert result.queries == len(x) + int(correct.sum()) * len(grid)
    # every chosen point is a grid point
    on_grid = (result.params[correct].unsqueeze(1) - grid.unsqueeze(0)).abs().amax(dim=2).amin(dim=1)
    assert float(on_grid.max()) < 1e-6


def test_worst_of_k_is_reproducible_per_seed(toy: Classifier) -> None:
    x, y = _blobs()
    threat = SpatialThreat(30.0, 0.25)
    attack = WorstOfK(k=5)
    a, b, c = (attack(toy, x, y, threat, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.params, b.params) and torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.params, c.params)
    assert a.queries == len(x) + int(a.correct.sum()) * 5 and a.gradient_evals == 0


def test_first_order_counts_and_stays_in_threat(toy: Classifier) -> None:
    x, y = _blobs()
    threat = SpatialThreat(30.0, 0.25)
    result = SpatialFirstOrder(steps=6, restarts=2)(toy, x, y, threat, seed=3)
    n = int(result.correct.sum())
    assert result.queries == len(x) + 2 * 7 * n
    assert result.gradient_evals == 2 * 6 * n
    assert bool(threat.contains(result.params).all())


# ---------------------------------------------------------------- the base class's guarantee


class _OutOfRange(SpatialAttack):
    name = "out_of_range"

    def _search(self, model, x, y, threat, *, generator):  # type: ignore[no-untyped-def]
        return torch.tensor([[500.0, 3.0, -7.0]]).expand(x.shape[0], 3)


class _WrongShape(SpatialAttack):
    def _search(self, model, x, y, threat, *, generator):  # type: ignore[no-untyped-def]
        return torch.zeros(x.shape[0], 2)


def test_base_class_clamps_rerenders_and_verifies(toy: Classifier) -> None:
    x, y = _blobs()
    threat = SpatialThreat(20.0, 0.125)
    result = _OutOfRange()(toy, x, y, threat)
    correct = result.correct
    assert torch.allclose(
        result.params[correct], torch.tensor([20.0, 0.125, -0.125]).expand(int(correct.sum()), 3)
    )
    assert bool(threat.contains(result.params).all())
    assert torch.allclose(result.x_adv[correct], spatial_transform(x[correct], result.params[correct]))
    with torch.no_grad():
        predictions = toy(result.x_adv).argmax(1)
    assert torch.equal(result.predictions, predictions)
    assert torch.equal(result.success, correct & (predictions != y))
    with pytest.raises(AttackError, match="params"):
        _WrongShape()(toy, x, y, threat)


def test_misclassified_inputs_are_left_alone(toy: Classifier) -> None:
    x, y = _blobs()
    y = 1 - y  # every input is now misclassified
    result = GridSearch(angles=3, translations=3)(toy, x, y, SpatialThreat())
    assert not bool(result.correct.any()) and not bool(result.success.any())
    assert torch.equal(result.x_adv, x) and float(result.params.abs().sum()) == 0
    assert result.queries == len(x) and result.success_rate == 0.0


def test_call_validation(toy: Classifier) -> None:
    x, y = _blobs()
    with pytest.raises(ThreatModelError, match="SpatialThreat"):
        WorstOfK()(toy, x, y, object())  # type: ignore[arg-type]
    with pytest.raises(ThreatModelError, match="bounds"):
        WorstOfK()(toy, x, y, SpatialThreat(bounds=(-1.0, 1.0)))
    with pytest.raises(DataError, match="N, C, H, W"):
        WorstOfK()(toy, x.flatten(1), y, SpatialThreat())
    with pytest.raises(AttackError, match="k"):
        WorstOfK(k=0)


# ---------------------------------------------------------------- digits-cnn under (30 degrees, 0.1)


def test_attacks_on_digits_cnn() -> None:
    from bastion.data import load_dataset
    from bastion.zoo import load

    model = load("digits-cnn")
    data = load_dataset("digits", split="test").take(100, seed=0)
    threat = SpatialThreat(30.0, 0.1)
    grid = GridSearch(angles=15, translations=3)  # 135 points: the paper's grid costs ~6x more
    results: dict[str, SpatialResult] = {
        "grid": grid(model, data.x, data.y, threat, seed=0),
        "worst_of_k": WorstOfK(k=10)(model, data.x, data.y, threat, seed=0),
        "first_order": SpatialFirstOrder(steps=20)(model, data.x, data.y, threat, seed=0),
    }
    for r in results.values():
        assert bool(threat.contains(r.params).all())
        assert r.x_adv.shape == data.x.shape and float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
        summary = r.to_dict()
        assert summary["success_rate"] == r.success_rate and 0 <= summary["mean_abs_angle"] <= 30
    n_correct = int(results["grid"].correct.sum())
    assert n_correct > 90
    assert results["grid"].queries == 100 + n_correct * 135
    assert results["worst_of_k"].queries == 100 + n_correct * 10
    # The grid holds many more points; on this fixed, seeded sample it is at least as strong as both.
    rates = {k: r.success_rate for k, r in results.items()}
    assert rates["grid"] >= rates["worst_of_k"] > 0
    assert rates["grid"] >= rates["first_order"] > 0
