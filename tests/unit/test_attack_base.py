"""The base class enforces the contract even for a misbehaving attack."""

import math

import pytest
import torch

from bastion import DataError, ThreatModel, ThreatModelError
from bastion.attacks.base import Attack
from bastion.threat import Norm


class Overshoot(Attack):
    """Deliberately returns points far outside the ball and the bounds."""

    name = "overshoot"
    norms = frozenset({Norm.LINF, Norm.L2})

    def __init__(self, scale: float = 10.0) -> None:
        self.scale = scale
        self.seen: int | None = None

    def _run(self, model, x, y, threat, *, targets, generator):
        self.seen = x.shape[0]
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        with torch.no_grad():
            model(x)
        return x + self.scale * noise


class L2Only(Overshoot):
    name = "l2-only"
    norms = frozenset({Norm.L2})


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_result_projected_and_verified(digits_model, digits_batch, norm):
    x, y = digits_batch
    threat = ThreatModel(norm, 0.3)
    res = Overshoot()(digits_model, x, y, threat, seed=3)
    assert bool(threat.contains(x, res.x_adv).all())
    with torch.no_grad():
        pred = digits_model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y)
    assert torch.equal(res.predictions, pred)
    assert torch.allclose(res.distance, threat.distance(x, res.x_adv))


def test_queries_counted_and_misclassified_skipped(digits_model, digits_batch):
    x, y = digits_batch
    y = y.clone()
    y[:5] = (y[:5] + 1) % 10  # the model now "misclassifies" these five
    atk = Overshoot()
    res = atk(digits_model, x, y, ThreatModel("linf", 0.1))
    assert atk.seen == x.shape[0] - 5
    assert res.success[:5].all()
    assert torch.equal(res.x_adv[:5], x[:5])
    assert res.queries == x.shape[0] + (x.shape[0] - 5)  # clean check + one forward in _run
    assert res.gradient_evals == 0


def test_inputs_untouched_and_seeded(digits_model, digits_batch):
    x, y = digits_batch
    x0, y0 = x.clone(), y.clone()
    a = Overshoot()(digits_model, x, y, ThreatModel("linf", 0.2), seed=7)
    b = Overshoot()(digits_model, x, y, ThreatModel("linf", 0.2), seed=7)
    c = Overshoot()(digits_model, x, y, ThreatModel("linf", 0.2), seed=8)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert torch.equal(a.x_adv, b.x_adv) and not torch.equal(a.x_adv, c.x_adv)
    assert a.seed == 7


def test_unsupported_norm(digits_model, digits_batch):
    x, y = digits_batch
    with pytest.raises(ThreatModelError, match="supports norms l2"):
        L2Only()(digits_model, x, y, ThreatModel("linf", 0.1))


def test_threat_bounds_must_match_model(digits_model, digits_batch):
    x, y = digits_batch
    with pytest.raises(ThreatModelError, match="bounds"):
        Overshoot()(digits_model, x, y, ThreatModel("linf", 0.1, bounds=(0, 255)))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x, y: (x * float("nan"), y), "NaN"),
        (lambda x, y: (x + 2.0, y), "outside the model's bounds"),
        (lambda x, y: ((x * 16).to(torch.uint8), y), "floating point"),
        (lambda x, y: (x, y[:-1]), "shape"),
        (lambda x, y: (x, y.float()), "integer"),
        (lambda x, y: (x, y + 10), "10 classes"),
        (lambda x, y: (x[:0], y[:0]), "non-empty"),
    ],
)
def test_bad_inputs_named(digits_model, digits_batch, mutate, message):
    x, y = mutate(*digits_batch)
    with pytest.raises(DataError, match=message):
        Overshoot()(digits_model, x, y, ThreatModel("linf", 0.1))


def test_unbounded_threat_only_clips(digits_model, digits_batch):
    x, y = digits_batch
    res = Overshoot()(digits_model, x, y, ThreatModel("linf", math.inf))
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert float(res.distance.max()) > 0.5


def test_batch_of_one(digits_model, digits_batch):
    x, y = digits_batch
    res = Overshoot()(digits_model, x[:1], y[:1], ThreatModel("l2", 1.0))
    assert res.x_adv.shape == x[:1].shape and res.success.shape == (1,)


class ThreeBackwards(Attack):
    """One forward, three backward passes through it, and one differentiable forward never back-propagated."""

    name = "three-backwards"

    def _run(self, model, x, y, threat, *, targets, generator):
        xr = x.clone().requires_grad_(True)
        logits = model(xr)
        for k in range(3):
            torch.autograd.grad(logits[:, k].sum(), xr, retain_graph=True)
        model(x.clone().requires_grad_(True))  # never differentiated: not a gradient evaluation
        return x


def test_gradient_evals_count_backward_passes(digits_model, digits_batch):
    x, y = digits_batch
    res = ThreeBackwards()(digits_model, x, y, ThreatModel("linf", 0.1))
    n = x.shape[0]
    assert res.gradient_evals == 3 * n
    assert res.queries == n + 2 * n
