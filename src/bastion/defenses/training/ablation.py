"""Training on ablated bands, the base network derandomized smoothing needs (Levine & Feizi 2020).

The model being trained is a :class:`~bastion.certify.derandomized.SoftVote` (the smoothed classifier, which
carries its ablation); each step trains its base network on one random band per image (``size``
columns or a ``size`` x ``size`` block kept, the rest ablated and encoded as in
:func:`~bastion.certify.derandomized.encode`). ``bastion certify --method derandomized`` then certifies it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["AblationTraining"]


class AblationTraining(Objective):
    """Cross-entropy of the SoftVote's base network on one random band per image (Levine & Feizi 2020);
    one forward-backward per step. The model's input normalisation is not applied: the encoding takes raw
    inputs in the SoftVote's bounds."""

    name = "ablation"

    def __init__(self) -> None:
        self._soft: nn.Module | None = None

    def bind(self, module: nn.Module, normalise: Callable[[torch.Tensor], torch.Tensor]) -> None:
        from bastion.certify.derandomized import SoftVote

        if not isinstance(module, SoftVote):
            raise DefenseError(
                "--method ablation trains a derandomized-smoothing model: build it as "
                "bastion.certify.derandomized.SoftVote(base, Ablation('column', 4), bounds), base taking the "
                f"2C-channel encoded bands (docs/certify.md); got {type(module).__name__}"
            )
        probe = torch.zeros(1)
        if not torch.equal(normalise(probe), probe):
            raise DefenseError(
                "--method ablation encodes raw inputs: train the SoftVote without --mean/--std"
            )
        self._soft = module

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from bastion.certify.derandomized import SoftVote, random_bands

        soft = self._soft
        if not isinstance(soft, SoftVote):
            raise DefenseError("AblationTraining.loss called before bind(): train it through harden()")
        x = batch.x
        if x.dim() != 4:
            raise DefenseError(f"ablation training takes image batches (N, C, H, W), got {tuple(x.shape)}")
        logits = soft.base(random_bands(x, soft.ablation, soft.bounds, batch.generator))
        return F.cross_entropy(logits, batch.y), logits

    def params(self) -> dict[str, object]:
        from bastion.certify.derandomized import SoftVote

        soft = self._soft
        if not isinstance(soft, SoftVote):
            return {}
        return {"kind": soft.ablation.kind, "size": soft.ablation.size}
