"""Minimum-norm attacks against the closed form on linear models, with their default hyperparameters.

For logits ``W x + b`` and an input of class ``y``, the smallest l2 perturbation that changes the prediction
is ``min_{j != y} (f_y - f_j)(x) / ||w_y - w_j||``, reached at the projection onto that hyperplane (linf:
``/ ||w_y - w_j||_1``, reached at ``x - d sign(w_y - w_j)``). The bounds do not change it when the projection
lies inside them, so each case keeps only such inputs: the answer is then exact. Cases differ in classes,
dimension, seed, weight scale (how large the constant ``c`` or the logits must be) and bounds (wide bounds
make a step sized to the box far too coarse for the perturbation). The ``held-out`` cases were not used
while choosing C&W's defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from bastion.attacks.evasion.cw import CarliniWagner
from bastion.attacks.evasion.deepfool import DeepFool
from bastion.attacks.evasion.fmn import FMN
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel
from conftest import LinearNet

ATTACKS = {"cw-l2": CarliniWagner, "deepfool": DeepFool, "fmn": FMN}


@dataclass(frozen=True)
class Case:
    classes: int
    dim: int
    seed: int
    bounds: tuple[float, float] = (0.0, 1.0)
    scale: float = 1.0  # weight scale: small weights need a large C&W constant, large ones a small one
    n: int = 60

    def __str__(self) -> str:
        lo, hi = self.bounds
        return f"k{self.classes}-d{self.dim}-s{self.seed}-[{lo:g},{hi:g}]-w{self.scale:g}"


CASES = [
    Case(2, 16, 0),
    Case(10, 64, 1),
    Case(10, 784, 2, n=50),
    Case(5, 32, 3, bounds=(-10.0, 10.0)),
    Case(3, 256, 4, bounds=(-10.0, 10.0)),
    Case(10, 64, 1, scale=0.05),
    Case(10, 64, 1, bounds=(-10.0, 10.0), scale=10.0),
]
HELD_OUT = [
    Case(2, 100, 21, bounds=(-1.0, 2.0)),
    Case(7, 48, 22, scale=0.3),
    Case(4, 500, 23, bounds=(-5.0, 5.0), scale=3.0, n=40),
    Case(10, 20, 24, bounds=(-100.0, 100.0)),
]


def linear_case(
    case: Case, norm: str = "l2"
) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model, inputs in the middle of the box whose minimal perturbation stays inside it, labels
    (the model's predictions) and the exact minimal distances in ``norm`` ("l2" or "linf")."""
    g = torch.Generator().manual_seed(case.seed)
    weight = torch.randn(case.classes, case.dim, generator=g) * case.scale
    bias = torch.randn(case.classes, generator=g) * 0.1 * case.scale
    lo, hi = case.bounds
    x = lo + (hi - lo) * (0.3 + 0.4 * torch.rand(4 * case.n, case.dim, generator=g))
    model = TorchClassifier(LinearNet(weight, bias), bounds=case.bounds, num_classes=case.classes)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    normal = weight[y][:, None, :] - weight[None, :, :]  # (n, k, d): w_y - w_j
    gap = logits.gather(1, y[:, None]) - logits  # (n, k): f_y - f_j >= 0
    dual = 1.0 if norm == "linf" else 2.0
    dist = (gap / normal.norm(p=dual, dim=2).clamp_min(1e-12)).masked_fill(
        torch.arange(case.classes) == y[:, None], math.inf
    )
    d_min, j = dist.min(dim=1)
    rows = torch.arange(x.shape[0])
    step = normal[rows, j]
    if norm == "linf":
        projection = x - d_min[:, None] * step.sign()
    else:
        projection = x - (d_min / step.norm(dim=1))[:, None] * step
    inside = ((projection > lo) & (projection < hi)).all(dim=1)
    keep = inside.nonzero().flatten()[: case.n]
    assert keep.numel() == case.n, "test setup: too few inputs whose projection stays in the box"
    return model, x[keep], y[keep], d_min[keep]


def check_known_answer(name: str, case: Case, norm: str = "l2") -> None:
    model, x, y, d_min = linear_case(case, norm)
    threat = ThreatModel(norm, math.inf, bounds=case.bounds)
    result = ATTACKS[name]()(model, x, y, threat, seed=0)
    # Adversarial for real, recomputed here rather than trusted from the result, and inside the bounds.
    with torch.no_grad():
        fooled = model(result.x_adv).argmax(1) != y
    assert bool(fooled.all()), f"{name} on {case}: {int((~fooled).sum())} results are not adversarial"
    assert torch.equal(result.success, fooled)
    assert float(result.x_adv.min()) >= case.bounds[0] and float(result.x_adv.max()) <= case.bounds[1]
    p = math.inf if norm == "linf" else 2.0
    assert torch.allclose(result.distance, (result.x_adv - x).flatten(1).norm(p=p, dim=1))
    ratio = result.distance / d_min
    assert float(ratio.min()) >= 1 - 1e-4, f"{name} on {case} beats the analytic minimum: a wrong reference"
    excess = float(ratio.median()) - 1
    far = float((ratio > 1.05).float().mean())
    assert excess <= 0.01, f"{name} on {case}: median {excess:.2%} above the minimum"
    assert far <= 0.02, f"{name} on {case}: {far:.0%} of the samples more than 5% above the minimum"


def params(cases: list[Case]) -> list[object]:
    out: list[object] = []
    for name in sorted(ATTACKS):
        for case in cases:
            out.append(pytest.param(name, case, id=f"{name}-{case}"))
    return out


@pytest.mark.parametrize(("name", "case"), params(CASES))
def test_defaults_find_the_analytic_minimum(name: str, case: Case) -> None:
    check_known_answer(name, case)


@pytest.mark.parametrize(("name", "case"), params(HELD_OUT))
def test_held_out_linear_models(name: str, case: Case) -> None:
    check_known_answer(name, case)


@pytest.mark.parametrize(
    ("name", "case"),
    [pytest.param(n, c, id=f"{n}-{c}") for n in ("deepfool", "fmn") for c in CASES + HELD_OUT],
)
def test_linf_linear_models(name: str, case: Case) -> None:
    """The same cases in linf, for the attacks that have it (the minimum divides by the l1 norm)."""
    check_known_answer(name, case, "linf")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_never_below_the_minimum_when_the_box_binds(name: str) -> None:
    """Inputs near the bounds, where the projection may leave the box: the unconstrained minimum is then a
    strict lower bound, and no attack may report a smaller distance."""
    g = torch.Generator().manual_seed(5)
    weight, bias = torch.randn(4, 32, generator=g), torch.zeros(4)
    model = TorchClassifier(LinearNet(weight, bias), bounds=(0.0, 1.0), num_classes=4)
    x = torch.rand(40, 32, generator=g).pow(3)  # most coordinates close to the lower bound
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    gap = logits.gather(1, y[:, None]) - logits
    norms = (weight[y][:, None, :] - weight[None, :, :]).norm(dim=2)
    d_min = (gap / norms.clamp_min(1e-12)).masked_fill(torch.arange(4) == y[:, None], math.inf).amin(1)
    result = ATTACKS[name]()(model, x, y, ThreatModel("l2", math.inf), seed=0)
    assert bool(result.success.all())
    assert bool((result.distance >= d_min * (1 - 1e-4)).all())
