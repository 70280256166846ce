"""Interval bound propagation: soundness against sampled points, exactness, refusals, certificates hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.certify import IntervalBoundPropagation, interval_bounds, margin_lower_bounds
from bastion.defenses.training import TrainingConfig, harden
from bastion.errors import CertificationError
from bastion.evaluation import evaluate
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel


def _every_layer_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(6, 8, 3, stride=1, padding=1), nn.LeakyReLU(0.1)),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(8 * 2 * 2, 16),
        nn.Tanh(),
        nn.Linear(16, 5),
    )
    with torch.no_grad():  # non-trivial running statistics, including a negative scale
        bn = net[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(-1.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return net.eval()


def _samples(x: torch.Tensor, eps: float, n: int, g: torch.Generator) -> torch.Tensor:
    """n points per input in the linf ball ∩ [0, 1]: half uniform, half on the ball's vertices."""
    shape = (x.shape[0], n, *x.shape[1:])
    inside = (torch.rand(shape, generator=g) * 2 - 1) * eps
    corners = torch.randint(0, 2, shape, generator=g).float().mul(2).sub(1) * eps
    delta = torch.cat([inside[:, : n // 2], corners[:, n // 2 :]], dim=1)
    return (x[:, None] + delta).clamp(0, 1)


def test_bounds_contain_thousands_of_points_in_the_ball() -> None:
    model = TorchClassifier(_every_layer_net(), mean=0.4, std=0.3)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=g)
    eps = 0.05
    lower, upper = interval_bounds(model, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    pts = _samples(x, eps, 2000, g)
    with torch.no_grad():
        out = model(pts.flatten(0, 1)).view(4, 2000, 5)
        assert bool((out >= lower[:, None] - 1e-5).all())
        assert bool((out <= upper[:, None] + 1e-5).all())
        labels = model(x).argmax(1)
        margins = margin_lower_bounds(model, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1), labels)
        true_margins = out.gather(2, labels[:, None, None].expand(4, 2000, 1)) - out
        assert bool((true_margins >= margins[:, None] - 1e-5).all())
    # The elided last layer is at least as tight as subtracting logit intervals.
    naive = lower.gather(1, labels[:, None]) - upper
    off = torch.ones_like(naive, dtype=torch.bool).scatter(1, labels[:, None], False)
    assert bool((margins[off] >= naive[off] - 1e-5).all())
    assert float((margins[off] - naive[off]).max()) > 1e-3


def test_bounds_are_exact_for_one_linear_layer() -> None:
    torch.manual_seed(1)
    layer = nn.Linear(6, 3)
    x, eps = torch.rand(5, 6), 0.1
    lower, upper = interval_bounds(layer, x - eps, x + eps)
    w = layer.weight.detach()
    # The maximiser of row k is the vertex x + eps sign(w_k); the minimiser its mirror.
    for k in range(3):
        top = layer(x + eps * w[k].sign())[:, k]
        bottom = layer(x - eps * w[k].sign())[:, k]
        assert torch.allclose(upper[:, k], top, atol=1e-6)
        assert torch.allclose(lower[:, k], bottom, atol=1e-6)


def test_bounds_are_differentiable_for_training() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.rand(2, 1, 8, 8)
    margins = margin_lower_bounds(net, x - 0.1, x + 0.1, torch.tensor([0, 1]))
    margins.sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * 2


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)), r"layer '1' \(Softmax\)"),
        (nn.Sequential(nn.Linear(4, 3), nn.LeakyReLU(-0.5)), "negative slope"),
        (nn.Sequential(_Custom()), r"layer '0' \(_Custom\).*nn.Sequential"),
        (nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 2), nn.GELU())), r"'1.1' \(GELU\)"),
    ],
)
def test_unsupported_layers_are_refused_by_name(net: nn.Module, match: str) -> None:
    x = torch.rand(2, 4)
    with pytest.raises(CertificationError, match=match):
        interval_bounds(net, x, x + 0.1)
    with pytest.raises(CertificationError, match=match):
        IntervalBoundPropagation().certify(net, x, ThreatModel("linf", 0.1))


def test_batchnorm_in_training_mode_is_refused() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    with pytest.raises(CertificationError, match="running statistics"):
        interval_bounds(net, torch.zeros(2, 4), torch.ones(2, 4))


def test_only_linf_is_certified() -> None:
    net = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(CertificationError, match="linf"):
        IntervalBoundPropagation().certify(net, torch.rand(2, 4), ThreatModel("l2", 0.1))


def test_tiny_epsilon_certifies_a_standard_model_and_large_one_does_not(digits_model, digits_batch) -> None:
    x, y = digits_batch
    ibp = IntervalBoundPropagation()
    small = ibp.certify(digits_model, x, ThreatModel("linf", 1e-4))
    large = ibp.certify(digits_model, x, ThreatModel("linf", 0.3))
    assert small.certified_accuracy(y, 1e-4) > 0.9
    assert large.certified_accuracy(y, 0.3) == 0.0
    assert not bool(small.abstained.any())
    assert torch.equal(small.prediction, digits_model(x).argmax(1))


@pytest.fixture(scope="module")
def ibp_trained(digits_data) -> TorchClassifier:
    x_train, y_train, _, _ = digits_data
    from bastion.data.dataset import Dataset

    train = Dataset(x=x_train, y=y_train, num_classes=10, name="digits-train")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    cfg = TrainingConfig(epochs=25, batch_size=64, lr=3e-3, epsilon_ramp=8, validation=0.0)
    return harden(net, train, "ibp", ThreatModel("linf", 0.15), config=cfg).classifier


def test_ibp_training_makes_a_model_verifiable_and_certificates_hold(ibp_trained, digits_data, digits_model):
    _, _, x, y = digits_data
    threat = ThreatModel("linf", 0.1)
    ibp = IntervalBoundPropagation()
    trained = ibp.certify(ibp_trained, x, threat)
    standard = ibp.certify(digits_model, x, threat)
    assert trained.certified_accuracy(y, 0.1) > 0.5
    assert standard.certified_accuracy(y, 0.1) < 0.05
    # Soundness: no attack breaks a certified input (the fast cascade: APGD-CE and APGD-T).
    attacked = evaluate(ibp_trained, x, y, threat, "fast", seed=0)
    assert bool(attacked.robust[trained.certified(y, 0.1)].all())
    assert attacked.robust_accuracy >= trained.certified_accuracy(y, 0.1)
