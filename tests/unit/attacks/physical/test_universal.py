"""Universal perturbations: the closed form on a linear model (the best universal linf pattern is
-epsilon * sign(w)), projections, refusals on the wrong scale, and the held-out protocol on digits."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.attacks.physical.universal import (
    UniversalDeepFool,
    UniversalGradient,
    check_universal_threat,
    fooling_rate,
    project,
)
from bastion.attacks.physical.universal_eval import evaluate_universal, random_like
from bastion.errors import DataError, ThreatModelError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

W = torch.tensor([[[0.5, -1.0], [2.0, -0.25]]])  # (1, 2, 2): ||w||_1 = 3.75


class Linear(torch.nn.Module):
    """Two logits [0, w.x + b]: class 1 where the margin w.x + b is positive."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x * W).flatten(1).sum(1) - (W.sum() * 0.5)  # margin 0 at the mid-grey image
        return torch.stack([torch.zeros_like(m), m], dim=1)


def _linear_inputs() -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    clf = TorchClassifier(Linear(), bounds=(0.0, 1.0), num_classes=2)
    g = torch.Generator().manual_seed(0)
    # mid-grey images nudged along +sign(w): margins m_i spread over (0, 0.6]; no pixel near a bound
    scale = torch.rand(40, 1, 1, 1, generator=g) * 0.6 / W.abs().sum()
    x = 0.5 + scale * W.sign()
    margins = Linear()(x)[:, 1]
    return clf, x, margins


FITTERS = [UniversalGradient(epochs=30, batch_size=8), UniversalDeepFool(passes=4, target=1.0)]


@pytest.mark.parametrize("fitter", FITTERS, ids=lambda f: f.name)
def test_linear_model_gets_the_closed_form_pattern(fitter) -> None:
    clf, x, margins = _linear_inputs()
    threat = ThreatModel("linf", 0.1, bounds=(0.0, 1.0))
    v = fitter.fit(clf, x, threat, seed=0)
    assert torch.allclose(v, -0.1 * W.sign(), atol=1e-6)  # every input's own best linf step, shared
    expected = float((margins < 0.1 * W.abs().sum()).float().mean())  # fooled iff m_i < eps * ||w||_1
    assert 0 < expected < 1 and fooling_rate(clf, x, v, threat) == pytest.approx(expected)


def test_projection_and_wrong_scale_refusals() -> None:
    v = torch.tensor([[[0.3, -0.05], [-0.4, 0.0]]])
    linf, l2 = ThreatModel("linf", 0.1), ThreatModel("l2", 0.25)
    assert torch.equal(project(v, linf), torch.tensor([[[0.1, -0.05], [-0.1, 0.0]]]))
    assert project(v, l2).norm() == pytest.approx(0.25)
    assert torch.allclose(project(v, l2), v * (0.25 / v.norm()))  # l2: the same direction, rescaled
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ThreatModelError, match="8/255"):
        check_universal_threat(ThreatModel("linf", 8.0), x)
    with pytest.raises(ThreatModelError, match="l2"):
        check_universal_threat(ThreatModel("l2", math.sqrt(4) + 0.1), x)
    check_universal_threat(ThreatModel("l2", 1.9), x)  # below the box diameter 2: accepted
    g = torch.Generator().manual_seed(1)
    noise = random_like(v, linf, g)
    assert torch.equal(noise.abs(), torch.full_like(v, 0.4))  # the same linf norm, random signs
    assert random_like(v, l2, g).norm() == pytest.approx(v.norm())


def test_held_out_protocol_on_digits() -> None:
    from bastion import zoo
    from bastion.data import load_dataset

    clf = zoo.load("digits-cnn")
    fit, test = (
        load_dataset("digits", split="train").take(300, seed=0),
        load_dataset("digits", split="test").take(300, seed=0),
    )
    threat = ThreatModel("linf", 0.2, bounds=clf.bounds)
    res = evaluate_universal(clf, UniversalGradient(epochs=5), fit.x, test.x, threat, y_test=test.y, seed=0)
    assert res.norm <= 0.2 + 1e-7 and res.perturbation.shape == test.x.shape[1:]
    assert res.test_fooling_rate > res.noise_fooling_rate + 0.05  # a pattern, not just noise of its size
    assert res.perturbed_accuracy is not None and res.clean_accuracy is not None
    assert res.perturbed_accuracy < res.clean_accuracy
    again = evaluate_universal(clf, UniversalGradient(epochs=5), fit.x, test.x, threat, seed=0)
    assert torch.equal(again.perturbation, res.perturbation)  # same seed, same pattern
    with pytest.raises(DataError, match="differ"):
        evaluate_universal(clf, UniversalGradient(epochs=1), fit.x, test.x[:, :, :4], threat)
