"""Gaussian noise augmentation, the training that randomized smoothing needs.

Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019:
train on x + N(0, σ²I) with the σ the smoothed classifier will use, so the base classifier is
accurate under that noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["GaussianNoise"]


class GaussianNoise(Objective):
    """Cross-entropy on x + σ·N(0, I). The noisy inputs are *not* clipped to the bounds: smoothing
    certifies the classifier on exactly that unclipped noise."""

    name = "noise"

    def __init__(self, sigma: float = 0.25) -> None:
        check_positive("sigma", sigma, error=DefenseError)
        self.sigma = float(sigma)

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(
            batch.x.shape, generator=batch.generator, device=batch.x.device, dtype=batch.x.dtype
        )
        logits = forward(batch.x + self.sigma * noise)
        return F.cross_entropy(logits, batch.y), logits
