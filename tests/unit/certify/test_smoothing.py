"""Randomized smoothing: closed forms on a linear model, Cohen's CERTIFY written out per sample, contract."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from bastion.certify import ABSTAIN, RandomizedSmoothing
from bastion.errors import CertificationError, DataError


def _distance(model, x: torch.Tensor) -> torch.Tensor:
    """l2 distance of each point of ``x`` to the linear binary model's decision boundary."""
    w = model.module.linear.weight.detach()
    b = model.module.linear.bias.detach()
    dw, db = w[1] - w[0], b[1] - b[0]
    return (x.flatten(1) @ dw + db).abs() / dw.norm()


def test_radius_converges_to_the_distance_to_a_linear_boundary(linear_binary) -> None:
    # For a linear f, P(f(x + d) = f(x)) = Phi(dist / sigma): the certified radius sigma Phi^-1(p_A)
    # approaches the true distance from below as the bound on p_A tightens.
    model, x, y = linear_binary
    dist = _distance(model, x)
    sigma = float(dist.max()) / 1.5  # keeps p_A below 1 - 1e-3, where n = 100,000 resolves it
    keep = dist > 0.3 * sigma  # p_A > 0.62: n = 1,000 certifies these too
    x, y, dist = x[keep], y[keep], dist[keep]
    assert x.shape[0] >= 10
    errors = []
    for n in (1_000, 100_000):
        result = RandomizedSmoothing(sigma, n_estimate=n, batch_size=20_000).certify(model, x, seed=0)
        assert not bool(result.abstained.any())
        assert torch.equal(result.prediction, y)
        assert bool((result.radius <= dist + 1e-6).all()), "a certificate beyond the true distance"
        errors.append(float((dist - result.radius).abs().max()) / sigma)
    assert errors[1] < 0.03
    assert errors[1] < errors[0] / 3


def _cohen_certify(model, x, select, estimate, sigma, alpha, num_classes):
    """CERTIFY of Cohen et al. (2019), Algorithm 1, one input and one noise draw at a time."""
    out = []
    for i in range(x.shape[0]):
        counts0 = [0] * num_classes
        for delta in select[i]:
            counts0[int(model((x[i] + sigma * delta)[None]).argmax(1))] += 1
        c_a = max(range(num_classes), key=lambda c: (counts0[c], -c))
        n_a = sum(int(model((x[i] + sigma * delta)[None]).argmax(1)) == c_a for delta in estimate[i])
        low = stats.binomtest(n_a, len(estimate[i])).proportion_ci(1 - 2 * alpha, method="exact").low
        out.append((ABSTAIN, 0.0, True) if low < 0.5 else (c_a, sigma * stats.norm.ppf(low), False))
    return out


def test_same_decisions_as_a_per_sample_cohen_certify_on_the_same_noise(digits_model, digits_batch) -> None:
    x = digits_batch[0][:8]
    rs = RandomizedSmoothing(0.5, n_select=20, n_estimate=150, alpha=0.01, batch_size=37)
    drawn: list[torch.Tensor] = []
    real_noise = rs._noise

    def record(like: torch.Tensor, owner: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = real_noise(like, owner, generator)
        drawn.append(noise.clone())  # certify may reuse the buffer it is handed
        return noise

    rs._noise = record  # type: ignore[method-assign]
    with torch.no_grad():
        result = rs.certify(digits_model, x, seed=3)
        noise = torch.cat(drawn)
        split = x.shape[0] * rs.n_select
        select = noise[:split].view(x.shape[0], rs.n_select, *x.shape[1:])
        estimate = noise[split:].view(x.shape[0], rs.n_estimate, *x.shape[1:])
        want = _cohen_certify(digits_model, x, select, estimate, rs.sigma, rs.alpha, 10)
    assert result.prediction.tolist() == [w[0] for w in want]
    assert result.abstained.tolist() == [w[2] for w in want]
    assert result.radius.tolist() == pytest.approx([w[1] for w in want], abs=1e-5)
    assert int((~result.abstained).sum()) > 0  # the comparison covers certified inputs ...
    assert int(result.abstained.sum()) > 0 or float(result.radius.min()) < 0.5  # ... and weak ones


def test_seeded_and_deterministic(digits_model, digits_batch) -> None:
    x = digits_batch[0][:6]
    rs = RandomizedSmoothing(0.5, n_estimate=300)
    a, b = rs.certify(digits_model, x, seed=1), rs.certify(digits_model, x, seed=1)
    assert torch.equal(a.radius, b.radius) and torch.equal(a.prediction, b.prediction)
    c = rs.certify(digits_model, x, generator=torch.Generator().manual_seed(1))  # one shared stream
    c2 = rs.certify(digits_model, x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(c.radius, c2.radius)
    d = rs.certify(digits_model, x, seed=2)
    assert not torch.equal(a.radius, d.radius)


def test_each_input_draws_its_own_noise_whatever_the_batch(digits_model, digits_batch) -> None:
    x = digits_batch[0][:6]
    whole = RandomizedSmoothing(0.5, n_select=30, n_estimate=200, batch_size=64).certify(
        digits_model, x, seed=4
    )
    # another batch size, and the last four inputs alone under their ids: the same noise, the same answer
    other = RandomizedSmoothing(0.5, n_select=30, n_estimate=200, batch_size=7).certify(
        digits_model, x, seed=4
    )
    part = RandomizedSmoothing(0.5, n_select=30, n_estimate=200, batch_size=64).certify(
        digits_model, x[2:], seed=4, example_ids=[2, 3, 4, 5]
    )
    assert torch.equal(whole.radius, other.radius) and torch.equal(whole.prediction, other.prediction)
    assert torch.equal(whole.radius[2:], part.radius) and torch.equal(whole.prediction[2:], part.prediction)
    # under other ids the same inputs draw other noise
    moved = RandomizedSmoothing(0.5, n_select=30, n_estimate=200).certify(
        digits_model, x[2:], seed=4, example_ids=[12, 13, 14, 15]
    )
    assert not torch.equal(whole.radius[2:], moved.radius)
    with pytest.raises(CertificationError, match="distinct"):
        RandomizedSmoothing(0.5, n_estimate=10).certify(digits_model, x[:2], example_ids=[1, 1])


def test_certified_accuracy_curve_counts_abstentions_as_errors(linear_binary) -> None:
    model, x, y = linear_binary
    result = RandomizedSmoothing(0.5, n_estimate=2000).certify(model, x)
    curve = dict(result.curve(y, (0.0, 0.1, 10.0)))
    manual = float(((result.prediction == y) & (result.radius >= 0.1)).float().mean())
    assert curve[0.1] == pytest.approx(manual)
    assert curve[10.0] == 0.0
    assert curve[0.0] >= curve[0.1]


def test_predict_abstains_on_the_boundary_and_answers_far_from_it(linear_binary) -> None:
    model, x, y = linear_binary
    w = model.module.linear.weight.detach()
    b = model.module.linear.bias.detach()
    dw, db = w[1] - w[0], b[1] - b[0]
    # Project the points onto the boundary: the base classifier's votes split 50/50 there.
    on = x - ((x @ dw + db) / dw.norm() ** 2)[:, None] * dw
    rs = RandomizedSmoothing(0.05, alpha=0.001)
    boundary = rs.predict(model, on, n=1000)
    assert float((boundary == ABSTAIN).float().mean()) >= 0.9
    far = rs.predict(model, x, n=1000)
    dist = _distance(model, x)
    confident = dist > 4 * 0.05
    assert bool(confident.any())
    assert torch.equal(far[confident], y[confident])


def test_progress_reports_every_noisy_sample(digits_model, digits_batch) -> None:
    seen: list[tuple[int, int]] = []
    rs = RandomizedSmoothing(0.25, n_select=10, n_estimate=50, batch_size=64)
    rs.certify(digits_model, digits_batch[0][:3], progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3 * 60, 3 * 60)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": 0.25, "alpha": 0.7}, "alpha"),
        ({"sigma": 0.25, "n_estimate": 0}, "n_estimate"),
        ({"sigma": 0.25, "batch_size": 2.5}, "batch_size"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, match) -> None:
    with pytest.raises(CertificationError, match=match):
        RandomizedSmoothing(**kwargs)


def test_bad_inputs_are_refused(digits_model) -> None:
    rs = RandomizedSmoothing(0.25, n_estimate=10)
    with pytest.raises(DataError, match=r"NaN|finite"):
        rs.certify(digits_model, torch.full((2, 1, 8, 8), math.nan))
    with pytest.raises(DataError, match="floating"):
        rs.certify(digits_model, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
