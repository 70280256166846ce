import warnings

import pytest
import torch
from torch import nn

from bastion import ModelContractError, ProbabilityOutputWarning, TorchClassifier
from bastion.model import predict


def _net(softmax: bool = False) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(12, 3)]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers)


def test_caller_module_untouched():
    module = _net()
    module.train()
    clf = TorchClassifier(module)
    clf(torch.rand(2, 3, 2, 2))
    assert module.training
    assert all(p.requires_grad for p in module.parameters())
    # the wrapper's copy is in eval mode with frozen parameters
    assert not clf.module.training and not any(p.requires_grad for p in clf.module.parameters())


def test_shared_module_mode_restored():
    module = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(12, 3))
    module.train()
    clf = TorchClassifier(module, copy=False)
    x = torch.rand(4, 12)
    assert torch.equal(clf(x), clf(x))  # dropout off inside the call
    assert module.training and module[1].training


def test_normalisation_inside_wrapper():
    module = _net()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]
    clf = TorchClassifier(module, mean=mean, std=std)
    x = torch.rand(5, 3, 2, 2)
    expected = module((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(clf(x), expected, atol=1e-6)


def test_gradients_flow_through_normalisation():
    clf = TorchClassifier(_net(), mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    x = torch.rand(2, 3, 2, 2, requires_grad=True)
    clf(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_probability_output_warned():
    clf = TorchClassifier(_net(softmax=True))
    with pytest.warns(ProbabilityOutputWarning, match="probabilities"):
        clf(torch.rand(4, 12))
    assert clf.outputs_probabilities is True


def test_logits_not_warned():
    clf = TorchClassifier(_net())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf(torch.rand(4, 12))
    assert clf.outputs_probabilities is False
    assert clf.num_classes == 3


def test_wrong_output_shape_is_a_contract_error():
    clf = TorchClassifier(nn.Flatten())  # returns (N, 12) but then asked 1-D
    with pytest.raises(ModelContractError, match="num_classes"):
        TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0)))(torch.rand(3, 12))
    assert clf(torch.rand(2, 12)).shape == (2, 12)


def test_num_classes_mismatch():
    clf = TorchClassifier(_net(), num_classes=5)
    with pytest.raises(ModelContractError, match="num_classes=5"):
        clf(torch.rand(2, 12))


def test_not_a_module():
    with pytest.raises(ModelContractError, match=r"nn\.Module"):
        TorchClassifier(lambda x: x)  # type: ignore[arg-type]


def test_predict_batches_match_single_call():
    clf = TorchClassifier(_net())
    x = torch.rand(37, 12)
    assert torch.allclose(predict(clf, x, batch_size=8), clf(x), atol=1e-6)
