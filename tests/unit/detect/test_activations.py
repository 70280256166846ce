import pytest
import torch
from torch import nn

from bastion.detect.activations import layer_activations, layer_names
from bastion.errors import DataError, ModelContractError
from bastion.model import TorchClassifier


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_penultimate_is_the_input_of_the_last_linear_layer() -> None:
    net = _net()
    clf = TorchClassifier(net, mean=0.5, std=0.25)
    x = torch.rand(7, 1, 2, 2)
    feats = layer_activations(clf, x, batch_size=3)
    expected = torch.relu(net[1](((x - 0.5) / 0.25).flatten(1)))
    assert feats.shape == (7, 6)
    torch.testing.assert_close(feats, expected)
    # The logits are the last layer applied to those features.
    torch.testing.assert_close(net[3](feats), clf(x))


def test_features_is_the_input_of_the_first_linear_layer() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 5), nn.Linear(5, 3)
    )
    x = torch.rand(4, 1, 2, 2)
    feats = layer_activations(net, x, "features")
    torch.testing.assert_close(feats, torch.relu(net[0](x)).flatten(1))
    assert not net[3]._forward_pre_hooks
    # An MLP's first linear layer reads the flattened input itself.
    torch.testing.assert_close(layer_activations(_net(), x, "features"), x.flatten(1))


def test_named_layer_reads_its_output_and_the_hook_is_removed() -> None:
    net = _net()
    x = torch.rand(5, 1, 2, 2)
    feats = layer_activations(net, x, "1")
    torch.testing.assert_close(feats, net[1](x.flatten(1)))
    assert not net[1]._forward_hooks and not net[3]._forward_pre_hooks
    assert layer_names(net) == ["0", "1", "2", "3"]


def test_errors_name_the_fix() -> None:
    net = _net()
    with pytest.raises(ModelContractError, match=r"no layer 'fc'.*penultimate"):
        layer_activations(net, torch.rand(2, 1, 2, 2), "fc")
    with pytest.raises(ModelContractError, match=r"no nn\.Linear"):
        layer_activations(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten()), torch.rand(2, 1, 2, 2))
    with pytest.raises(DataError, match="NaN"):
        layer_activations(net, torch.full((2, 1, 2, 2), float("nan")))
    with pytest.raises(ModelContractError, match="only exposes predictions"):
        layer_activations(lambda x: x, torch.rand(2, 4))  # type: ignore[arg-type]
