"""Constrained adversarial training for tabular MLPs.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks" (ICLR 2018), in the
constrained feature space of Simonetto et al. (IJCAI 2022): every batch, a constrained attack
(default :class:`~bastion.tabular.attacks.CPGD`, 10 steps) turns the batch into **valid** adversarial
records — repaired onto the threat model and re-verified by the attack base class, so the model never
trains on a record the threat does not allow — and the loss mixes clean and adversarial
cross-entropy: ``(1 - mix) * CE(clean) + mix * CE(adversarial)`` (``mix=1``: Madry's objective,
``mix=0.5``: the 50/50 mix that keeps clean accuracy). Records the attack cannot flip contribute
their highest-loss valid candidate (CPGD returns it), records already misclassified their original.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.errors import DataError, ThreatModelError
from bastion.tabular.attacks.base import TabularAttack
from bastion.tabular.attacks.cpgd import CPGD
from bastion.tabular.data import TabularData
from bastion.tabular.model import TorchTabularClassifier
from bastion.tabular.threat import TabularThreatModel
from bastion.tabular.train import fit_mlp

__all__ = ["adversarial_train"]


def adversarial_train(
    data: TabularData,
    threat: TabularThreatModel,
    *,
    attack: TabularAttack | None = None,
    mix: float = 0.5,
    hidden: Sequence[int] = (64, 64),
    epochs: int = 20,
    clean_epochs: int = 0,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 128,
    weight_decay: float = 1e-4,
) -> TorchTabularClassifier:
    """Train an MLP on ``data`` against ``threat``; returns a TorchTabularClassifier in eval mode.

    The first ``clean_epochs`` of ``epochs`` train on clean records only (a warm start, so the
    attack has a decision boundary to push against). Same seed, same weights: initialisation runs
    under a forked global RNG, batches and the attack use explicit generators. ``threat`` must be
    built on ``data.schema``'s columns (mutability, costs and directions may differ).
    """
    attack = attack if attack is not None else CPGD(steps=10)
    check_positive("clean_epochs", clean_epochs, integer=True, allow_zero=True, error=DataError)
    if not 0.0 <= mix <= 1.0:
        raise DataError(f"mix is the adversarial share of the loss in [0, 1], got {mix!r}")
    if clean_epochs > epochs:
        raise DataError(f"clean_epochs ({clean_epochs}) cannot exceed epochs ({epochs})")
    if [f.name for f in threat.schema.features] != list(data.schema.names):
        raise ThreatModelError(
            "the threat model's features differ from the data's; build it from data.schema"
        )
    attack_gen = torch.Generator(device=data.x.device).manual_seed(seed + 1)

    def mixed(model: TorchTabularClassifier, z: torch.Tensor, epoch: int, idx: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(model.module(z[idx]), data.y[idx])
        if epoch >= clean_epochs and mix > 0:
            x_adv = attack(model, data.x[idx], data.y[idx], threat, generator=attack_gen).x_adv
            adv = F.cross_entropy(model.module(model.encoder.encode(x_adv)), data.y[idx])
            loss = (1.0 - mix) * loss + mix * adv
        return loss

    # epochs, batch_size, lr and the data's size are checked by the shared loop
    return fit_mlp(data, mixed, hidden, epochs, seed, lr, batch_size, weight_decay)
