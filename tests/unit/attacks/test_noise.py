import pytest
import torch

from bastion import ThreatModel, ThreatModelError
from bastion.attacks import RandomNoise
from bastion.attacks.evasion.noise import sphere_noise


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.5)])
def test_noise_lies_on_the_sphere(norm, eps):
    threat = ThreatModel(norm, eps)
    x = torch.rand(50, 1, 8, 8)
    delta = sphere_noise(threat, x, torch.Generator().manual_seed(0))
    dist = threat.distance(torch.zeros_like(x), delta)
    assert torch.allclose(dist, torch.full_like(dist, eps), rtol=1e-5)


def test_no_success_below_a_tiny_epsilon_and_much_at_a_huge_one(digits_model, digits_batch):
    x, y = digits_batch
    tiny = RandomNoise(draws=20)(digits_model, x, y, ThreatModel("linf", 1e-4))
    assert not bool(tiny.success.any())
    huge = RandomNoise(draws=20)(digits_model, x, y, ThreatModel("linf", 0.6))
    assert huge.success.float().mean() > 0.5
    assert huge.gradient_evals == 0


def test_queries_stop_for_fooled_samples(digits_model, digits_batch):
    x, y = digits_batch
    res = RandomNoise(draws=50)(digits_model, x, y, ThreatModel("linf", 0.6))
    # the base class's clean check and final verification aside, fooled samples stop querying
    assert res.queries < x.shape[0] * 51


def test_unbounded_threat_is_refused(digits_model, digits_batch):
    x, y = digits_batch
    with pytest.raises(ThreatModelError, match="finite epsilon"):
        RandomNoise()(digits_model, x, y, ThreatModel("linf", float("inf")))
