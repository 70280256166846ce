"""Adversarial training against a universal patch.

The attacker of :class:`~bastion.attacks.physical.AdversarialPatch` fits *one* patch that works on every
image. Universal adversarial training (Shafahi, Najibi, Xu, Dickerson, Davis & Goldstein, "Universal
Adversarial Training", AAAI 2020) trains the network and that patch together: each step moves the patch one
few signed-gradient steps up the network's loss (pasted under fresh random placements from the patch
threat's EOT distribution) and then trains the network on the patched batch, mixed with the clean one. The
patch carries over from step to step, so the network always faces the strongest patch found so far, at the
cost of ``patch_steps`` extra forward-backward passes per step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.attacks.physical.patch import patch_step
from bastion.attacks.physical.patch_threat import PatchThreat
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError
from bastion.threat import Bounds

__all__ = ["UniversalPatchTraining"]


class UniversalPatchTraining(Objective):
    """``UniversalPatchTraining(area=0.05, patch_step=0.1, patch_steps=5, clean_weight=0.5, bounds=None)``:
    cross-entropy on ``clean_weight`` x clean + (1 - ``clean_weight``) x patched inputs, the universal patch
    moved by ``patch_steps`` signed steps of ``patch_step`` x (bounds width) on each training batch (one step
    was too weak: a freshly fitted patch still broke as many inputs; five halve it on digits). ``bounds``
    default: the threat's if the run has one, else (0, 1). The patch covers ``area`` of the image under the
    default EOT (scale, rotation, brightness, anywhere). ``patch`` holds the current patch (C, h, w)."""

    name = "patch"

    def __init__(
        self,
        area: float = 0.05,
        patch_step: float = 0.1,
        clean_weight: float = 0.5,
        bounds: Bounds | None = None,
        patch_steps: int = 5,
    ) -> None:
        check_positive("patch_step", patch_step, error=DefenseError)
        check_positive("patch_steps", patch_steps, integer=True, error=DefenseError)
        self.patch_steps = int(patch_steps)
        if not 0.0 <= clean_weight < 1.0:
            raise DefenseError(f"clean_weight is the clean loss's share, in [0, 1); got {clean_weight!r}")
        self.area, self.patch_step, self.clean_weight = float(area), float(patch_step), float(clean_weight)
        self.bounds = bounds
        self.patch: torch.Tensor | None = None
        self._threat: PatchThreat | None = None
        PatchThreat(area=self.area)  # an area out of range fails here, before training starts

    def params(self) -> dict[str, Any]:
        return {"area": self.area, "patch_step": self.patch_step, "patch_steps": self.patch_steps,
                "clean_weight": self.clean_weight}  # fmt: skip

    def _threat_for(self, batch: Batch) -> PatchThreat:
        if self._threat is None:
            bounds = self.bounds or (batch.threat.bounds if batch.threat is not None else (0.0, 1.0))
            self._threat = PatchThreat(area=self.area, bounds=bounds)
        return self._threat

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch.x, batch.y
        if x.dim() != 4:
            raise DefenseError(f"patch training takes image batches (N, C, H, W), got shape {tuple(x.shape)}")
        threat = self._threat_for(batch)
        low, high = threat.bounds
        hw = (int(x.shape[2]), int(x.shape[3]))
        if self.patch is None or self.patch.shape[0] != x.shape[1]:
            shape = (int(x.shape[1]), *threat.patch_shape(hw))
            self.patch = low + (high - low) * torch.rand(shape, generator=batch.generator).to(x)
        placement = threat.sample(x.shape[0], hw, batch.generator)
        # the attacker's step: up the loss of the network as it is now (eval mode, see Objective)
        patch = self.patch.detach().to(x)
        for _ in range(self.patch_steps):
            patch = patch_step(
                attack_forward, threat, x, patch, placement, self.patch_step * (high - low), labels=y
            )
        self.patch = patch
        patched = threat.apply(x, self.patch, placement)[0]
        logits = forward(torch.cat([x, patched]))
        clean_logits, patched_logits = logits[: x.shape[0]], logits[x.shape[0] :]
        loss = self.clean_weight * F.cross_entropy(clean_logits, y) + (
            1 - self.clean_weight
        ) * F.cross_entropy(patched_logits, y)
        return loss, patched_logits
