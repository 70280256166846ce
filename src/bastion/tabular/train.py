"""A small seeded MLP trainer for tabular data (the standard model attacks and audits start from)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.base import check_positive
from bastion.errors import DataError
from bastion.tabular.data import TabularData
from bastion.tabular.encoding import Encoder
from bastion.tabular.model import TorchTabularClassifier

__all__ = ["mlp", "train_mlp"]

BatchLoss = Callable[[TorchTabularClassifier, torch.Tensor, int, torch.Tensor], torch.Tensor]
"""``batch_loss(model, z, epoch, idx)``: the scalar loss of the records ``idx`` (B,) in epoch ``epoch``;
``z`` (N, M) is every record encoded once, ``model`` the classifier under training (train mode)."""


def mlp(in_features: int, num_classes: int, hidden: Sequence[int] = (64, 64)) -> nn.Sequential:
    """Linear-ReLU stack: in_features -> hidden... -> num_classes logits."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def train_mlp(
    data: TabularData,
    *,
    hidden: Sequence[int] = (64, 64),
    epochs: int = 20,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 128,
    weight_decay: float = 1e-4,
) -> TorchTabularClassifier:
    """Fit an encoder on ``data`` and train an MLP on it with Adam and cross-entropy.

    Same seed, same weights: initialisation runs under a forked global RNG (the caller's global
    seed is left as it was) and batches are shuffled by an explicit generator. Returned in eval mode.
    """

    def clean(model: TorchTabularClassifier, z: torch.Tensor, epoch: int, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model.module(z[idx]), data.y[idx])

    return fit_mlp(data, clean, hidden, epochs, seed, lr, batch_size, weight_decay)


def fit_mlp(
    data: TabularData,
    batch_loss: BatchLoss,
    hidden: Sequence[int],
    epochs: int,
    seed: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
) -> TorchTabularClassifier:
    """The seeded loop :func:`train_mlp` and constrained adversarial training share: fit the encoder,
    build the MLP under a forked global RNG seeded with ``seed``, then ``epochs`` passes of Adam over
    batches shuffled by an explicit generator (also ``seed``), minimising ``batch_loss`` per batch.

    Same seed and same ``batch_loss``, same weights; the gradients are zeroed right before each
    backward pass, so whatever ``batch_loss`` back-propagates on the way (an attack) is not kept.
    """
    check_positive("epochs", epochs, integer=True, error=DataError)
    check_positive("batch_size", batch_size, integer=True, error=DataError)
    check_positive("lr", lr, error=DataError)
    if len(data) < 2 or data.num_classes < 2:
        raise DataError("training needs at least 2 records and 2 classes")
    encoder = Encoder.fit(data.schema, data.x)
    z, n = encoder.encode(data.x), len(data.y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = mlp(encoder.width, data.num_classes, hidden)
    model = TorchTabularClassifier(module, encoder, num_classes=data.num_classes)
    batches = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    module.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=batches)
        for i in range(0, n, batch_size):
            loss = batch_loss(model, z, epoch, perm[i : i + batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
    module.eval()
    return model
