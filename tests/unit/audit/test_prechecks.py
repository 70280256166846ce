import torch
from torch import nn

from bastion.audit.prechecks import check_data, check_model
from bastion.model import TorchClassifier


def codes(findings):
    return {f.code for f in findings}


def test_a_sound_model_passes(digits_model, digits_batch):
    x, y = digits_batch
    facts, found = check_model(digits_model, x, y)
    assert found == []
    assert facts.differentiable and not facts.randomised and not facts.probabilities
    assert facts.zero_gradient_fraction == 0.0


def test_masked_models_are_flagged(masked_models, digits_batch):
    x, y = digits_batch
    assert "BA103" in codes(check_model(masked_models["quantised"], x, y)[1])
    assert {"BA101", "BA103"} <= codes(check_model(masked_models["saturated"], x, y)[1])


class Noisy(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.05 * torch.randn_like(x))


class Detached(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.detach())


class Unstable(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + torch.sqrt(x - x).flatten(1).sum(1, keepdim=True)  # d sqrt(0) = inf


def test_randomised_non_differentiable_and_unstable_models(digits_mlp_module, digits_batch):
    x, y = digits_batch
    for wrapper, code in ((Noisy, "BA102"), (Detached, "BA105"), (Unstable, "BA104")):
        clf = TorchClassifier(wrapper(digits_mlp_module), num_classes=10)
        assert code in codes(check_model(clf, x, y)[1]), wrapper.__name__


def test_data_outside_bounds_and_standardised_data():
    x = torch.rand(20, 1, 8, 8)
    assert check_data(x, (0.0, 1.0)) == []
    found = check_data(x * 2, (0.0, 1.0))
    assert codes(found) == {"BA106"} and found[0].evidence["inputs_outside"] == 20
    z = torch.randn(200, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert "BA107" in codes(check_data(z, (-5.0, 5.0)))
