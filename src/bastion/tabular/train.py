"""A small seeded MLP trainer for tabular data (the standard model attacks and audits start from)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bastion.attacks.base import check_positive
from bastion.errors import DataError
from bastion.tabular.data import TabularData
from bastion.tabular.encoding import Encoder
from bastion.tabular.model import TorchTabularClassifier

__all__ = ["mlp", "train_mlp"]


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
    check_positive("epochs", epochs, integer=True, error=DataError)
    check_positive("batch_size", batch_size, integer=True, error=DataError)
    check_positive("lr", lr, error=DataError)
    if len(data) < 2 or data.num_classes < 2:
        raise DataError("training needs at least 2 records and 2 classes")
    encoder = Encoder.fit(data.schema, data.x)
    z, y = encoder.encode(data.x), data.y
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = mlp(encoder.width, data.num_classes, hidden)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss_fn(module(z[idx]), y[idx]).backward()
            opt.step()
    module.eval()
    return TorchTabularClassifier(module, encoder, num_classes=data.num_classes)
