"""Blur corruptions (Hendrycks & Dietterich, ICLR 2019): Gaussian, defocus and motion blur.

Constants: CIFAR-10-C, from the paper's reference generator ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness). Kernels are applied per channel with a depthwise ``conv2d``; every
kernel sums to one, so a constant image is left unchanged and the mean is kept up to border effects.
Glass blur and zoom blur are not implemented (see docs/corruptions.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bastion.corruptions.base import corruption

__all__ = ["defocus_blur", "depthwise_conv", "disk_kernel", "gaussian_blur", "motion_blur"]


def depthwise_conv(x: torch.Tensor, kernel: torch.Tensor, *, mode: str = "reflect") -> torch.Tensor:
    """Convolve each channel of ``x`` (N, C, H, W) with one odd-sized 2-D ``kernel`` (kh, kw).

    Same-size output. Borders: "reflect" mirrors without repeating the edge pixel (OpenCV's default),
    "replicate" repeats it (SciPy's "nearest"); reflect falls back to replicate on images smaller than
    the kernel's radius, where a mirror is undefined.
    """
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    if mode == "reflect" and (ph >= x.shape[2] or pw >= x.shape[3]):
        mode = "replicate"
    channels = x.shape[1]
    padded = F.pad(x, (pw, pw, ph, ph), mode=mode)
    weight = kernel.to(x.device, x.dtype).expand(channels, 1, kh, kw)
    return F.conv2d(padded, weight, groups=channels)


def _gaussian_taps(sigma: float, radius: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    i = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    w = torch.exp(-(i**2) / (2.0 * sigma**2))
    return w / w.sum()


@corruption(family="blur", constants=(0.4, 0.6, 0.7, 0.8, 1.0), random=False)
def gaussian_blur(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian blur with standard deviation ``c`` pixels, as scikit-image's ``gaussian(sigma=c)``:
    taps out to ``int(4 c + 0.5)`` pixels, replicated ("nearest") borders, separable.

    ``c`` per severity 1..5: 0.4, 0.6, 0.7, 0.8, 1.0 (CIFAR-10-C).
    """
    radius = max(math.floor(4.0 * c + 0.5), 1)
    taps = _gaussian_taps(c, radius, device=x.device, dtype=x.dtype)
    return depthwise_conv(x, torch.outer(taps, taps), mode="replicate")


def disk_kernel(radius: float, alias_blur: float, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The defocus kernel: the normalised disk ``{(i, j): i^2 + j^2 <= radius^2}`` on the pixel grid,
    anti-aliased by a 3x3 Gaussian of standard deviation ``alias_blur`` and renormalised.

    Shape (2R + 1, 2R + 1) with ``R = floor(radius) + 2`` (the outer ring is zero, so the 3x3 blur of the
    disk is exact inside it).
    """
    r_grid = math.floor(radius) + 2
    i = torch.arange(-r_grid, r_grid + 1, dtype=torch.float64)
    disk = ((i[:, None] ** 2 + i[None, :] ** 2) <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    taps = _gaussian_taps(alias_blur, 1, device=disk.device, dtype=torch.float64)
    smooth = F.conv2d(disk[None, None], torch.outer(taps, taps)[None, None], padding=1)[0, 0]
    return (smooth / smooth.sum()).to(dtype)


@corruption(
    family="blur", constants=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)), random=False
)
def defocus_blur(x: torch.Tensor, c: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
    """Defocus blur: convolution with :func:`disk_kernel` ``(radius, alias_blur) = c``, mirrored borders.

    ``c`` per severity 1..5: (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1) (CIFAR-10-C).
    """
    return depthwise_conv(x, disk_kernel(c[0], c[1], dtype=x.dtype), mode="reflect")


@corruption(family="blur", constants=((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5)), random=True)
def motion_blur(x: torch.Tensor, c: tuple[int, float], generator: torch.Generator | None) -> torch.Tensor:
    """Motion blur along a random direction: ``(radius, sigma) = c`` of ImageMagick's ``-motion-blur``
    as the reference generator calls it, with the angle uniform in [-45, 45] degrees per image.

    A one-sided line kernel of ``2 radius + 1`` taps, tap ``i`` at offset ``round(i (cos a, sin a))``
    with weight ``exp(-i^2 / (2 sigma^2))`` (normalised), replicated borders. ``c`` per severity 1..5:
    (6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5) (CIFAR-10-C). An approximation of ImageMagick's filter
    (same kernel shape and direction law), not bit-identical to it.
    """
    n, _, h, w = x.shape
    radius, sigma = c
    angle = (torch.rand(n, generator=generator, device=x.device, dtype=torch.float64) * 90.0 - 45.0) * (
        math.pi / 180.0
    )
    taps = torch.arange(2 * radius + 1, device=x.device, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2.0 * sigma**2))
    weights = (weights / weights.sum()).to(x.dtype)
    dx = torch.round(taps[:, None] * torch.cos(angle)[None, :]).long()  # (taps, N)
    dy = torch.round(taps[:, None] * torch.sin(angle)[None, :]).long()
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = torch.zeros_like(x)
    for k in range(taps.numel()):
        r = (rows[None, :, None] + dy[k][:, None, None]).clamp(0, h - 1).expand(n, h, w)
        q = (cols[None, None, :] + dx[k][:, None, None]).clamp(0, w - 1).expand(n, h, w)
        out += weights[k] * x.permute(0, 2, 3, 1)[batch, r, q].permute(0, 3, 1, 2)
    return out
