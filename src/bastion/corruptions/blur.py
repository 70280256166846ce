"""Blur corruptions (Hendrycks & Dietterich, ICLR 2019): Gaussian, defocus, motion, zoom and glass blur.

Constants: CIFAR-10-C, from the paper's reference generator ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness). Kernels are applied per channel with a depthwise ``conv2d``; every
kernel sums to one, so a constant image is left unchanged and the mean is kept up to border effects.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bastion.corruptions.base import corruption

__all__ = [
    "clipped_zoom",
    "defocus_blur",
    "depthwise_conv",
    "disk_kernel",
    "gaussian_blur",
    "glass_blur",
    "line_blur",
    "local_pixel_swaps",
    "motion_blur",
    "zoom_blur",
]


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
    radius, sigma = c
    angle = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=torch.float64) * 90.0 - 45.0
    return line_blur(x, radius, sigma, angle)


def line_blur(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion-blur kernel: image ``k`` of ``x`` (N, C, H, W) averaged along a one-sided line
    at ``angle[k]`` degrees (0: to the right, 90: down, rows growing downwards).

    ``2 radius + 1`` taps; tap ``i`` weighs ``exp(-i^2 / (2 sigma^2))`` (normalised) and samples the
    pixel at column offset ``round(i cos a)``, row offset ``round(i sin a)``; pixels outside the image
    repeat the edge (ImageMagick's default "edge" virtual pixels).
    """
    n, _, h, w = x.shape
    rad = angle.to(device=x.device, dtype=torch.float64) * (math.pi / 180.0)
    taps = torch.arange(2 * radius + 1, device=x.device, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2.0 * sigma**2))
    weights = (weights / weights.sum()).to(x.dtype)
    dx = torch.round(taps[:, None] * torch.cos(rad)[None, :]).long()  # (taps, N)
    dy = torch.round(taps[:, None] * torch.sin(rad)[None, :]).long()
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = torch.zeros_like(x)
    for k in range(taps.numel()):
        r = (rows[None, :, None] + dy[k][:, None, None]).clamp(0, h - 1).expand(n, h, w)
        q = (cols[None, None, :] + dx[k][:, None, None]).clamp(0, w - 1).expand(n, h, w)
        out += weights[k] * x.permute(0, 2, 3, 1)[batch, r, q].permute(0, 3, 1, 2)
    return out


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The reference's ``clipped_zoom``: zoom ``x`` (N, C, H, W) about its centre by ``factor >= 1``.

    Per axis of length ``L``: the centred crop of ``ceil(L / factor)`` pixels (starting at
    ``(L - crop) // 2``) is resized to ``round(crop * factor)`` pixels by linear interpolation with the
    end pixels aligned (SciPy's ``ndimage.zoom(order=1)``; torch's ``align_corners=True``), and the
    centred ``L`` pixels of that (starting at ``(size - L) // 2``) are kept.
    """
    _, _, h, w = x.shape
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[:, :, top : top + ch, left : left + cw]
    size = (round(ch * factor), round(cw * factor))
    zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    trim_h, trim_w = (size[0] - h) // 2, (size[1] - w) // 2
    return zoomed[:, :, trim_h : trim_h + h, trim_w : trim_w + w]


def _zoom_factors(stop: float) -> tuple[float, ...]:
    # the reference's values bit for bit (1.2500000000000002, not 1.25: on a 12-pixel side that factor
    # zooms a 10-pixel crop to round(12.500000000000002) = 13 pixels, 1.25 to 12)
    return tuple(float(z) for z in np.arange(1.0, stop, 0.01))


@corruption(
    family="blur", constants=tuple(_zoom_factors(s) for s in (1.06, 1.11, 1.16, 1.21, 1.26)), random=False
)
def zoom_blur(x: torch.Tensor, c: tuple[float, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Zoom blur: ``(x + sum_z clipped_zoom(x, z)) / (len(c) + 1)`` over the zoom factors ``z`` in ``c``
    (:func:`clipped_zoom`: zoom about the centre, cropped back to the image size).

    ``c`` per severity 1..5: 1.00, 1.01, ... up to 1.06, 1.11, 1.15, 1.20, 1.25 in steps of 0.01 (7, 12, 16,
    21, 26 factors): what the CIFAR-10-C generator's ``np.arange(1, 1.06 | 1.11 | 1.16 | 1.21 | 1.26,
    0.01)`` produces (floating-point rounding includes the stop for the first two), with its rounding
    errors kept.
    """
    out = x.clone()
    for factor in c:
        out += clipped_zoom(x, factor)
    return out / (len(c) + 1)


def local_pixel_swaps(
    x: torch.Tensor, max_delta: int, iterations: int, generator: torch.Generator | None
) -> torch.Tensor:
    """The glass-blur shuffle: ``iterations`` sweeps over the pixels (rows ``H - d`` down to ``d + 1``,
    and in each row columns ``W - d`` down to ``d + 1``), each swapping pixel ``(h, w)`` (all channels)
    with ``(h + dy, w + dx)``, ``dx, dy`` uniform integers in ``[-d, d - 1]`` (the reference's
    ``np.random.randint(-d, d)``), ``d = max_delta``, drawn independently per image.

    Sequential, as in the reference (a later swap can move a pixel again), so the result is a
    permutation of each image's pixels. Draws, in order: ``torch.randint(-d, d, (iterations, rows,
    cols, N, 2))`` from ``generator`` (last axis: dx, dy).
    """
    n, _, h, w = x.shape
    rows = list(range(h - max_delta, max_delta, -1))
    cols = list(range(w - max_delta, max_delta, -1))
    out = x.permute(0, 2, 3, 1).clone()  # (N, H, W, C): one pixel is out[b, i, j]
    if not rows or not cols or iterations <= 0:
        return out.permute(0, 3, 1, 2)
    shape = (iterations, len(rows), len(cols), n, 2)
    offsets = torch.randint(-max_delta, max_delta, shape, generator=generator, device=x.device)
    row_of = torch.tensor(rows, device=x.device)[None, :, None, None]
    col_of = torch.tensor(cols, device=x.device)[None, None, :, None]
    to_row = row_of + offsets[..., 1]  # (iterations, rows, cols, N)
    to_col = col_of + offsets[..., 0]
    batch = torch.arange(n, device=x.device)
    for it in range(iterations):
        for a, i in enumerate(rows):
            for b, j in enumerate(cols):
                r, q = to_row[it, a, b], to_col[it, a, b]
                here = out[:, i, j].clone()
                out[:, i, j] = out[batch, r, q]
                out[batch, r, q] = here
    return out.permute(0, 3, 1, 2)


@corruption(
    family="blur",
    constants=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    random=True,
)
def glass_blur(x: torch.Tensor, c: tuple[float, int, int], generator: torch.Generator | None) -> torch.Tensor:
    """Glass blur: :func:`gaussian_blur` with standard deviation ``sigma``, :func:`local_pixel_swaps`
    (``max_delta``, ``iterations``, seeded by ``generator``), then the same Gaussian blur again.

    ``c = (sigma, max_delta, iterations)`` per severity 1..5: (0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1),
    (0.25, 1, 2), (0.4, 1, 2) (CIFAR-10-C). The reference quantises the first blur to uint8; here it
    stays in floating point.
    """
    sigma, max_delta, iterations = c
    blurred = gaussian_blur.kernel(x, sigma, None)
    swapped = local_pixel_swaps(blurred, max_delta, iterations, generator)
    return gaussian_blur.kernel(swapped, sigma, None)
