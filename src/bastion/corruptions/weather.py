"""Weather corruptions beyond fog (Hendrycks & Dietterich, ICLR 2019): snow.

Constants: CIFAR-10-C, from the paper's reference generator ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness). The reference routes some layers through 8-bit images (PNG for
ImageMagick, uint8 for OpenCV); here every step stays in floating point.
"""

from __future__ import annotations

import torch

from bastion.corruptions.base import corruption
from bastion.corruptions.blur import clipped_zoom, line_blur
from bastion.errors import DataError

__all__ = ["grey", "snow"]

# OpenCV's COLOR_RGB2GRAY weights (ITU-R BT.601), which the reference's snow uses
_LUMA = (0.299, 0.587, 0.114)


def grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey level: OpenCV's ``COLOR_RGB2GRAY`` (0.299 R + 0.587 G + 0.114 B) on 3 channels,
    the channel itself on 1; other channel counts are refused (one-line :class:`DataError`)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise DataError(f"needs 1 (grey) or 3 (RGB) channels, got {x.shape[1]}")
    weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


@corruption(
    family="digital",
    constants=(
        (0.1, 0.2, 1.0, 0.6, 8, 3.0, 0.95),
        (0.1, 0.2, 1.0, 0.5, 10, 4.0, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4.0, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6.0, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12.0, 0.8),
    ),
    random=True,
)
def snow(x: torch.Tensor, c: tuple[float, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Snow: a layer of flakes from Gaussian noise, streaked downwards, on a brightened image.

    ``c = (loc, scale, zoom, threshold, radius, sigma, keep)``. Per image: noise ``N(loc, scale^2)`` of the
    image's size, zoomed about its centre by ``zoom`` (:func:`~bastion.corruptions.blur.clipped_zoom`),
    values under ``threshold`` set to 0, clipped to [0, 1], motion-blurred
    (:func:`~bastion.corruptions.blur.line_blur`: ImageMagick's kernel, ``radius``, ``sigma``, angle
    uniform in [-135, -45] degrees). The image becomes ``keep x + (1 - keep) max(x, 1.5 g + 0.5)``
    (``g`` its grey level, :func:`grey`), and the layer and the layer rotated by 180 degrees are added.

    ``c`` per severity 1..5 (CIFAR-10-C): (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8). Draws, in order: the noise ``(N, H, W)`` (standard normal), the
    angles ``(N,)`` (uniform). 1 or 3 channels (the layer is added to every channel).
    """
    loc, scale, zoom, threshold, radius, sigma, keep = c
    n, _, h, w = x.shape
    g = grey(x)
    noise = torch.randn(n, 1, h, w, generator=generator, device=x.device, dtype=torch.float64)
    angle = torch.rand(n, generator=generator, device=x.device, dtype=torch.float64) * 90.0 - 135.0
    layer = clipped_zoom(noise * scale + loc, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0.0, 1.0)
    layer = line_blur(layer, int(radius), sigma, angle).to(x.dtype)
    base = keep * x + (1 - keep) * torch.maximum(x, g * 1.5 + 0.5)
    return base + layer + layer.flip(2, 3)
