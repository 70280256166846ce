"""IBP's bounds hold: on random networks of every supported layer, no point found by sampling, box
vertices or a margin-minimising PGD falls outside them, on boxes from 1e-4 to 0.1.

Everything runs in float64, so the tolerance (1e-9 relative) tests the mathematics, not rounding. A
sabotaged IBP (radius through W instead of |W|, or BatchNorm's signed scale) must be caught: the
checker can fail.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.certify import (
    IntervalBoundPropagation,
    Normalize,
    _ibp_bounds,
    interval_bounds,
    margin_lower_bounds,
)
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

EPSILONS = (1e-4, 1e-3, 1e-2, 0.1)
ACTIVATIONS = (
    lambda g: nn.ReLU(),
    lambda g: nn.LeakyReLU(float(torch.rand((), generator=g)) * 2.5),  # slopes above 1 too
    lambda g: nn.ELU(alpha=float(torch.rand((), generator=g)) * 2),
    lambda g: nn.ReLU6(),
    lambda g: nn.Hardtanh(-0.4, 0.6),
    lambda g: nn.Sigmoid(),
    lambda g: nn.Tanh(),
    # A low threshold and a negative beta: torch switches to x itself where the curve is well away.
    lambda g: nn.Softplus(beta=float(torch.rand((), generator=g)) * 4 - 2 or 1.0, threshold=0.3),
)


class HandWrittenNormalize(nn.Module):
    """A user's own normalisation layer: buffers and a device move in the forward."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std


def _bn(kind: type[nn.Module], n: int, g: torch.Generator) -> nn.Module:
    bn = kind(n)
    with torch.no_grad():  # non-trivial running statistics and negative scales
        bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=g) * 1.7 + 0.3)
        bn.weight.copy_(torch.rand(n, generator=g) * 3 - 1.5)
        bn.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return bn


def _pick(options: tuple, g: torch.Generator):
    return options[int(torch.randint(len(options), (), generator=g))]


def _act(g: torch.Generator) -> nn.Module:
    return _pick(ACTIVATIONS, g)(g)


def _stats(layout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std that broadcast per channel against the layout's inputs."""
    if layout == 0:
        return torch.tensor([0.5]), torch.tensor([0.25])
    mean, std = torch.tensor([0.45, 0.55]), torch.tensor([0.3, 0.6])
    return (mean.view(1, 2, 1), std.view(1, 2, 1)) if layout == 1 else (mean, std)  # images: per channel


def random_network(seed: int) -> tuple[TorchClassifier, tuple[int, ...]]:
    """A random float64 classifier over one of three input layouts, and its input shape (C, ...)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # layer initialisation (under the fixture's forked RNG)
    layout = seed % 3
    mean, std = _stats(layout)
    per_channel = (mean, std) if layout < 2 else (mean.view(1, 2, 1, 1), std.view(1, 2, 1, 1))
    hand = HandWrittenNormalize(*per_channel)
    front = _pick((None, Normalize(mean, std), hand, "classifier"), g)
    if layout == 0:  # vectors (N, 12): Linear, BatchNorm1d, Unflatten into a 1-d convolution
        shape: tuple[int, ...] = (12,)
        body = [nn.Linear(12, 8), _bn(nn.BatchNorm1d, 8, g), _act(g), nn.Unflatten(1, (2, 4))]
        body += [nn.Conv1d(2, 3, 3, padding=1), _act(g), nn.Flatten()]
        width = 12
    elif layout == 1:  # 1-d signals (N, 2, 12)
        shape = (2, 12)
        pool = (nn.MaxPool1d(2), nn.AvgPool1d(2), nn.AdaptiveMaxPool1d(6), nn.AdaptiveAvgPool1d(6))[
            seed // 3 % 4
        ]
        block = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), _bn(nn.BatchNorm1d, 3, g), _act(g), pool)
        body = [block, nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1), _act(g)), nn.Flatten()]
        width = 12
    else:  # images (N, 2, 6, 6), the pooling nested two Sequentials deep
        shape = (2, 6, 6)
        pool = (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveMaxPool2d(3), nn.AdaptiveAvgPool2d(3))[
            seed // 3 % 4
        ]
        block = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _bn(nn.BatchNorm2d, 4, g), _act(g))
        body = [nn.Sequential(block, nn.Sequential(pool, nn.Identity())), nn.Flatten()]
        width = 36
    head = [nn.Linear(width, 10), _act(g), nn.Dropout(0.5), nn.Linear(10, 4)]
    if seed % 4 == 3:  # no final Linear to fold into the margins: the plain logit intervals are used
        head.append(_act(g))
    layers = ([front] if isinstance(front, nn.Module) else []) + body + head
    net = nn.Sequential(*layers).double().eval()
    if front == "classifier":
        return TorchClassifier(net, copy=False, mean=mean, std=std), shape
    return TorchClassifier(net, copy=False), shape


def _pgd_minimise(clf: TorchClassifier, objective, lower: torch.Tensor, upper: torch.Tensor, k: int, g):
    """Per input n and objective j < k, the least objective(logits)[n, j] PGD found in the box."""
    n = lower.shape[0]
    lo, up = lower[:, None].expand(n, k, *lower.shape[1:]), upper[:, None].expand(n, k, *lower.shape[1:])
    x = lo + torch.rand(lo.shape, generator=g, dtype=lo.dtype) * (up - lo)
    best = torch.full((n, k), torch.inf, dtype=lo.dtype)
    step = (up - lo) / 6
    for _ in range(12):
        x = x.detach().requires_grad_(True)
        values = objective(clf(x.flatten(0, 1)).view(n, k, -1)).diagonal(dim1=1, dim2=2)  # (n, k)
        best = torch.minimum(best, values.detach())
        (grad,) = torch.autograd.grad(values.sum(), x)
        x = torch.minimum(torch.maximum(x - step * grad.sign(), lo), up)
    with torch.no_grad():
        return torch.minimum(best, objective(clf(x.flatten(0, 1)).view(n, k, -1)).diagonal(dim1=1, dim2=2))


def violations(clf: TorchClassifier, shape: tuple[int, ...], eps: float, seed: int, n_points: int) -> int:
    """How many (input, class) bounds some sampled, vertex or PGD point breaks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, *shape, generator=g, dtype=torch.float64)
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    with torch.no_grad():
        lo, hi = interval_bounds(clf, lower, upper)
        labels = clf(x).argmax(1)
        margins = margin_lower_bounds(clf, lower, upper, labels)
        u = torch.rand(3, n_points, *shape, generator=g, dtype=torch.float64)
        u[:, n_points // 2 :] = u[:, n_points // 2 :].round()  # vertices
        pts = lower[:, None] + u * (upper - lower)[:, None]
        z = clf(pts.flatten(0, 1)).view(3, n_points, -1)
    k = z.shape[2]

    def margin(logits: torch.Tensor) -> torch.Tensor:
        return logits.gather(2, labels[:, None, None].expand(-1, logits.shape[1], 1)) - logits

    least_margin = torch.minimum(margin(z).amin(1), _pgd_minimise(clf, margin, lower, upper, k, g))
    least = torch.minimum(z.amin(1), _pgd_minimise(clf, lambda t: t, lower, upper, k, g))
    most = torch.maximum(z.amax(1), -_pgd_minimise(clf, lambda t: -t, lower, upper, k, g))
    tol = 1e-9 * (1 + z.abs().amax())
    bad = (least < lo - tol) | (most > hi + tol) | (least_margin < margins - tol)
    return int(bad.sum())


@pytest.fixture(autouse=True)
def _forked_rng():
    with torch.random.fork_rng():
        yield


@pytest.mark.parametrize("seed", range(12))
def test_no_point_escapes_the_bounds(seed: int) -> None:
    clf, shape = random_network(seed)
    for eps in EPSILONS:
        assert violations(clf, shape, eps, seed, n_points=64) == 0, f"eps={eps}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12, 212))
def test_no_point_escapes_the_bounds_many_networks(seed: int) -> None:
    clf, shape = random_network(seed)
    for eps in EPSILONS:
        assert violations(clf, shape, eps, seed, n_points=512) == 0, f"eps={eps}"


def test_the_checker_catches_a_broken_ibp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Radius through W (not |W|), and BatchNorm's signed scale: both must be found unsound."""
    through = _ibp_bounds.through

    def signed_linear(step, box):
        if step.kind == "linear":
            mid, rad = box
            w = step.layer.weight
            return torch.nn.functional.linear(mid, w, step.layer.bias), torch.nn.functional.linear(rad, w)
        return through(step, box)

    def signed_batchnorm(step, box):
        mid, rad = box
        out_mid, out_rad = through(step, box)
        if step.kind == "batchnorm":
            scale = step.layer.weight * step.layer.running_var.add(step.layer.eps).rsqrt()
            out_rad = rad * scale.view((1, -1) + (1,) * (mid.dim() - 2))
        return out_mid, out_rad

    for broken, seeds in ((signed_linear, range(6)), (signed_batchnorm, range(1, 9))):
        monkeypatch.setattr(_ibp_bounds, "through", broken)
        found = sum(violations(*random_network(s), 0.1, s, n_points=64) for s in seeds)
        assert found > 0, broken.__name__


@pytest.mark.parametrize("seed", range(0, 12, 3))
def test_the_certifier_accepts_every_supported_network_and_its_certificates_hold(seed: int) -> None:
    clf, shape = random_network(seed)
    net32 = TorchClassifier(clf.module, mean=clf.mean, std=clf.std)
    net32.module.float()
    x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(seed))
    for eps in (1e-4, 1e-2):
        result = IntervalBoundPropagation().certify(net32, x, ThreatModel("linf", eps))  # self-check passes
        assert torch.equal(result.prediction, net32(x).argmax(1))
        certified = result.radius > 0
        if bool(certified.any()):
            label = result.prediction[certified][:, None, None]

            def margin(t: torch.Tensor, label: torch.Tensor = label) -> torch.Tensor:
                return t.gather(2, label.expand(-1, t.shape[1], 1)) - t

            lower, upper = (x[certified] - eps).clamp(0, 1), (x[certified] + eps).clamp(0, 1)
            z = _pgd_minimise(net32, margin, lower, upper, 4, torch.Generator().manual_seed(seed))
            assert bool((z >= 0).all())  # PGD flips no certified prediction


def test_the_fast_networks_use_every_supported_layer_and_front() -> None:
    from bastion.certify._ibp_rules import KINDS

    seen: set[type] = set()
    fronts: set[str] = set()
    for seed in range(12):
        clf, _ = random_network(seed)
        seen |= {type(m) for m in clf.module.modules()}
        first = clf.module[0]
        fronts.add("classifier" if clf.mean is not None else type(first).__name__)
    assert set(KINDS) <= seen, sorted(k.__name__ for k in set(KINDS) - seen)
    assert {"classifier", "Normalize", "HandWrittenNormalize"} <= fronts
