"""Noise corruptions (Hendrycks & Dietterich, ICLR 2019): Gaussian, shot, impulse and speckle noise.

Constants: CIFAR-10-C, from the paper's reference generator ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness). Every kernel works on images in [0, 1], per element (each channel of
each pixel drawn independently), and draws only from the caller's generator.
"""

from __future__ import annotations

import torch

from bastion.corruptions.base import corruption

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]


def _randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _rand(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@corruption(family="noise", constants=(0.04, 0.06, 0.08, 0.09, 0.10), random=True)
def gaussian_noise(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Additive Gaussian noise: ``clip(x + c * z)``, ``z ~ N(0, 1)``; ``c`` is the standard deviation on a
    [0, 1] scale.

    ``c`` per severity 1..5: 0.04, 0.06, 0.08, 0.09, 0.10 (CIFAR-10-C; ImageNet-C uses 0.08 .. 0.38).
    """
    return x + c * _randn(x, generator)


@corruption(family="noise", constants=(500, 250, 100, 75, 50), random=True)
def shot_noise(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Shot (Poisson) noise: ``clip(Poisson(c * x) / c)``; ``c`` is photons per unit intensity, so a
    smaller ``c`` is noisier (the variance is ``x / c``).

    ``c`` per severity 1..5: 500, 250, 100, 75, 50 (CIFAR-10-C).
    """
    rates = (x.float() * c).clamp_min(0.0)
    return torch.poisson(rates, generator=generator).to(x.dtype) / c


@corruption(family="noise", constants=(0.01, 0.02, 0.03, 0.05, 0.07), random=True)
def impulse_noise(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Impulse (salt-and-pepper) noise: each element independently, with probability ``c``, is replaced
    by 0 or 1 (each with probability 1/2); ``c`` is scikit-image's ``random_noise(mode="s&p", amount=c)``.

    ``c`` per severity 1..5: 0.01, 0.02, 0.03, 0.05, 0.07 (CIFAR-10-C).
    """
    hit = _rand(x, generator) < c
    salt = (_rand(x, generator) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


@corruption(family="noise", constants=(0.06, 0.10, 0.12, 0.16, 0.20), random=True)
def speckle_noise(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Speckle (multiplicative) noise: ``clip(x + x * c * z)``, ``z ~ N(0, 1)``; dark pixels stay dark.

    ``c`` per severity 1..5: 0.06, 0.10, 0.12, 0.16, 0.20 (CIFAR-10-C).
    """
    return x + x * c * _randn(x, generator)
