"""Input normalisation under IBP: the classifier's own mean/std, ``bastion.certify.Normalize`` first in
a Sequential, and a hand-written normalisation layer all give the same bounds; a user module whose
forward is anything but elementwise affine is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.certify import IntervalBoundPropagation, Normalize, interval_bounds, margin_lower_bounds
from bastion.errors import CertificationError, ModelContractError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

MEAN, STD = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]


class UserNormalize(nn.Module):
    """The usual hand-written layer: statistics as buffers, reshaped and moved in the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN))
        self.std = torch.tensor(STD)  # a plain tensor attribute, not a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.view(1, -1, 1, 1).to(x.device)) / self.std[None, :, None, None]


def _body() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    ).eval()  # fmt: skip


def _three_ways() -> list[TorchClassifier]:
    body = _body()
    return [
        TorchClassifier(body, mean=MEAN, std=STD),
        TorchClassifier(nn.Sequential(Normalize(MEAN, STD), *body)),
        TorchClassifier(nn.Sequential(UserNormalize(), *body)),
    ]


def test_classifier_normalize_and_a_hand_written_layer_give_the_same_bounds_and_certificates() -> None:
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    lower, upper = (x - 0.01).clamp(0, 1), (x + 0.01).clamp(0, 1)
    models = _three_ways()
    bounds = [interval_bounds(m, lower, upper) for m in models]
    labels = models[0](x).argmax(1)
    margins = [margin_lower_bounds(m, lower, upper, labels) for m in models]
    before = dict(vars(models[2].module[0]))
    assert interval_bounds(models[2], lower, upper)[0].shape == (6, 5)
    assert vars(models[2].module[0]) == before  # tracing the user's layer leaves it untouched
    for (lo, hi), margin in zip(bounds[1:], margins[1:], strict=True):
        assert torch.allclose(lo, bounds[0][0], atol=1e-5) and torch.allclose(hi, bounds[0][1], atol=1e-5)
        assert torch.allclose(margin, margins[0], atol=1e-5)
    for eps in (1e-4, 3e-3):
        results = [IntervalBoundPropagation().certify(m, x, ThreatModel("linf", eps)) for m in models]
        assert results[0].radius.gt(0).any()
        for r in results[1:]:
            assert torch.equal(r.radius, results[0].radius) and torch.equal(
                r.prediction, results[0].prediction
            )


def test_normalisation_is_bounded_exactly_even_with_a_negative_scale() -> None:
    """(c - x) / s then one Linear layer: the bounds are attained at the box's vertices."""

    class Flip(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (0.5 - x) / 0.2

    torch.manual_seed(2)
    layer = nn.Linear(6, 3)
    net = nn.Sequential(Flip(), layer).double()
    x, eps = torch.rand(4, 6, dtype=torch.float64), 0.05
    lower, upper = interval_bounds(net, x - eps, x + eps)
    w = layer.weight.detach().double()
    for k in range(3):  # the input that maximises logit k moves against the sign of w_k (Flip negates)
        assert torch.allclose(upper[:, k], net(x - eps * w[k].sign())[:, k])
        assert torch.allclose(lower[:, k], net(x + eps * w[k].sign())[:, k])


class _Affine(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.scale = nn.Parameter(torch.tensor([2.0, -0.5, 1.0, 3.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


ACCEPTED = [
    lambda m, x: x.sub(0.5).div(0.25),
    lambda m, x: -x * m.scale + 1.0,
    lambda m, x: torch.mul(torch.add(x, 1.0), m.scale.view(1, -1)),
    lambda m, x: x / m.scale.abs().reciprocal(),
]


@pytest.mark.parametrize("fn", ACCEPTED)
def test_elementwise_affine_forwards_are_accepted_and_bounded_soundly(fn) -> None:
    torch.manual_seed(3)
    net = nn.Sequential(_Affine(fn), nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    x = torch.rand(5, 4, dtype=torch.float64)
    lo, hi = interval_bounds(net, x - 0.05, x + 0.05)
    pts = x[:, None] + (torch.rand(5, 500, 4, dtype=torch.float64) * 2 - 1) * 0.05
    with torch.no_grad():
        z = net(pts)
    assert bool((z >= lo[:, None] - 1e-12).all() and (z <= hi[:, None] + 1e-12).all())


def _branch(m, x: torch.Tensor) -> torch.Tensor:
    if x.sum() > 0:
        return x
    return -x


REFUSED = [
    (lambda m, x: torch.relu(x) * 2, "applies 'relu' to its input"),
    (lambda m, x: x * x, "not affine"),
    (lambda m, x: 1.0 / x, "not affine"),
    (lambda m, x: x[:, :2] - 1.0, "applies 'getitem' to its input"),
    (lambda m, x: x.sub_(0.5), "applies 'sub_' to its input"),
    (lambda m, x: x + torch.rand(4), "different operations or constants"),
    (lambda m, x: x.add(1.0, alpha=2.0), "applies 'add' to its input"),
    (lambda m, x: x / torch.zeros(4), "division by zero"),
    (_branch, "cannot be traced"),
]


@pytest.mark.parametrize(("fn", "match"), REFUSED)
def test_other_user_modules_are_refused(fn, match: str) -> None:
    net = nn.Sequential(_Affine(fn), nn.Linear(4, 3))
    x = torch.rand(2, 4)
    with pytest.raises(CertificationError, match=rf"layer '0' \(_Affine\).*{match}|{match}"):
        interval_bounds(net, x, x + 0.1)


def test_a_user_container_with_its_own_forward_is_refused() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - 0.5) / 0.2  # affine, but it owns layers IBP would never see used

    with pytest.raises(CertificationError, match=r"layer '0' \(Block\), a container with its own forward"):
        interval_bounds(nn.Sequential(Block(), nn.Linear(4, 3)), torch.zeros(1, 4), torch.ones(1, 4))


def test_normalise_for_training_is_a_classifiers_or_a_normalize() -> None:
    """What the training loop hands IBP training (the classifier's bound .normalise) is followed."""
    clf = _three_ways()[0]
    x = torch.rand(3, 3, 4, 4)
    labels = torch.tensor([0, 1, 2])
    expected = margin_lower_bounds(clf, x, x + 0.01, labels)
    via_method = margin_lower_bounds(clf.module, x, x + 0.01, labels, normalise=clf.normalise)
    via_layer = margin_lower_bounds(clf.module, x, x + 0.01, labels, normalise=Normalize(MEAN, STD))
    assert torch.allclose(via_method, expected) and torch.allclose(via_layer, expected, atol=1e-6)
    with pytest.raises(CertificationError, match=r"bare nn\.Module only"):
        margin_lower_bounds(clf, x, x + 0.01, labels, normalise=clf.normalise)


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        (0.5, 0.0, "positive"),
        (0.5, [0.2, -0.1], "positive"),
        (float("nan"), 0.2, "finite"),
        ([], 1.0, "finite"),
    ],
)
def test_normalize_validates_its_statistics(mean, std, match: str) -> None:
    with pytest.raises(ModelContractError, match=match):
        Normalize(mean, std)


def test_normalize_matches_the_classifiers_own_normalisation() -> None:
    x = torch.rand(2, 3, 4, 4)
    clf = TorchClassifier(nn.Identity(), mean=MEAN, std=STD)
    assert torch.allclose(Normalize(MEAN, STD)(x), clf.normalise(x))
    assert "mean=" in repr(Normalize(0.5, 0.2))
