import torch

from bastion import ThreatModel
from bastion.attacks import PGD, Transfer
from bastion.attacks.evasion._surrogate import distil_surrogate, surrogate_for
from bastion.model import TorchClassifier


def test_surrogate_shapes():
    cnn = surrogate_for((1, 28, 28), 10)
    assert isinstance(cnn[0], torch.nn.Conv2d)
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    mlp = surrogate_for((20,), 3)
    assert mlp(torch.zeros(2, 20)).shape == (2, 3)


def test_distilled_surrogate_agrees_with_the_model(digits_model, digits_data):
    _, _, x, _ = digits_data
    net = distil_surrogate(digits_model, x, ThreatModel("linf", 0.1), torch.Generator().manual_seed(0))
    with torch.no_grad():
        agree = (net(x).argmax(1) == digits_model(x).argmax(1)).float().mean()
    assert agree > 0.9
    assert not any(p.requires_grad for p in net.parameters())


def test_transfer_fools_a_sound_model_without_gradients(digits_model, digits_batch):
    x, y = digits_batch
    res = Transfer(steps=20)(digits_model, x, y, ThreatModel("linf", 0.2), seed=0)
    assert res.success.float().mean() > 0.5
    assert res.gradient_evals == 0


def test_transfer_breaks_what_masked_gradients_hide(masked_models, digits_batch):
    x, y = digits_batch
    model = masked_models["quantised"]
    threat = ThreatModel("linf", 0.2)
    pgd = PGD(steps=20)(model, x, y, threat, seed=0)
    transfer = Transfer(steps=20)(model, x, y, threat, seed=0)
    assert transfer.success.float().mean() > pgd.success.float().mean() + 0.3


def test_a_given_surrogate_is_used(digits_model, digits_mlp_module, digits_batch):
    x, y = digits_batch
    threat = ThreatModel("linf", 0.2)
    own = Transfer(surrogate=TorchClassifier(digits_mlp_module, num_classes=10), steps=20)
    res = own(digits_model, x, y, threat, seed=0)
    assert own.params()["surrogate"] == "given"
    # the surrogate is the model itself, so this is PGD with the margin loss: it should break most
    assert res.success.float().mean() > 0.8
