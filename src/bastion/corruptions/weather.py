"""Weather corruptions beyond fog (Hendrycks & Dietterich, ICLR 2019): snow and spatter.

Constants: CIFAR-10-C, from the paper's reference generator ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness). The reference routes some layers through 8-bit images (PNG for
ImageMagick, uint8 for OpenCV); here every step stays in floating point.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bastion.corruptions.base import corruption
from bastion.corruptions.blur import clipped_zoom, gaussian_blur, line_blur
from bastion.errors import DataError

__all__ = ["canny", "chamfer_distance", "equalize_hist", "grey", "snow", "spatter"]

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


def _colour(x: torch.Tensor, rgb: tuple[int, int, int]) -> torch.Tensor:
    """An 8-bit RGB colour as a (1, C, 1, 1) tensor for ``x``: the colour on 3 channels, its grey level
    (:func:`grey`'s weights) on 1; other channel counts are refused."""
    c = torch.tensor(rgb, device=x.device, dtype=torch.float64).view(1, 3, 1, 1) / 255.0
    if x.shape[1] != 3:
        grey(x)  # refuses anything but one channel
        c = grey(c)
    return c.to(x.dtype)


def _correlate3(u: torch.Tensor, kernel: list[list[int]], mode: str) -> torch.Tensor:
    """3x3 correlation (not flipped) of (N, H, W) ``u`` in float64; ``mode``: "replicate" or "reflect"
    (OpenCV's BORDER_REFLECT_101), falling back to replicate on images under 2 pixels a side."""
    if mode == "reflect" and min(u.shape[1], u.shape[2]) < 2:
        mode = "replicate"
    k = torch.tensor(kernel, device=u.device, dtype=torch.float64).view(1, 1, 3, 3)
    return F.conv2d(F.pad(u[:, None].double(), (1, 1, 1, 1), mode=mode), k)[:, 0]


def _box3(u: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``blur(u, (3, 3))``: the 3x3 mean, BORDER_REFLECT_101, in float64."""
    return _correlate3(u, [[1, 1, 1], [1, 1, 1], [1, 1, 1]], "reflect") / 9.0


def canny(u: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """OpenCV's ``Canny(u, low, high)`` (aperture 3, L1 gradient) on (N, H, W) 8-bit values: a bool edge map.

    3x3 Sobel derivatives (replicated borders), magnitude ``|dx| + |dy|``; a pixel is kept when its
    magnitude exceeds ``low`` and is a maximum across the edge (OpenCV's sectors in 15-bit fixed point,
    ``tan 22.5 = 13573 / 2^15``; ties broken as OpenCV does; outside the image the magnitude is 0); kept
    pixels above ``high`` are edges, and so are kept pixels 8-connected to an edge (hysteresis).
    """
    dx = _correlate3(u, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "replicate").round().long()
    dy = _correlate3(u, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "replicate").round().long()
    mag = dx.abs() + dy.abs()
    p = F.pad(mag, (1, 1, 1, 1))

    def at(r: int, q: int) -> torch.Tensor:  # the neighbour at row offset r, column offset q
        return p[:, 1 + r : p.shape[1] - 1 + r, 1 + q : p.shape[2] - 1 + q]

    ax, ay = dx.abs(), dy.abs() << 15
    tg22x = ax * 13573
    tg67x = tg22x + (ax << 16)
    same_sign = (dx ^ dy) >= 0
    horizontal = (mag > at(0, -1)) & (mag >= at(0, 1))
    vertical = (mag > at(-1, 0)) & (mag >= at(1, 0))
    diagonal = torch.where(
        same_sign, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1))
    )
    peak = torch.where(ay < tg22x, horizontal, torch.where(ay > tg67x, vertical, diagonal))
    kept = peak & (mag > low)
    edges = kept & (mag > high)
    while True:
        grown = kept & (F.max_pool2d(edges[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0)
        if torch.equal(grown | edges, edges):
            return edges
        edges = grown | edges


def chamfer_distance(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """OpenCV's ``distanceTransform(DIST_L2, 5)`` truncated at ``cap``: for each pixel of (N, H, W) bool
    ``~zero``, the cheapest 5x5-chamfer path to a ``zero`` pixel (steps of cost 1, 1.4 and 2.1969 for
    (1, 0), (1, 1) and (2, 1) moves, in OpenCV's 16-bit fixed point), ``min(distance, cap)``; paths stay in
    the image. Images without a zero pixel are ``cap`` everywhere."""
    h, w = zero.shape[1:]
    one = 1 << 16
    costs = {(1, 0): one, (1, 1): round(1.4 * one), (2, 1): round(2.1969 * one)}
    steps = []
    for (a, b), cost in costs.items():
        for dr, dc in {(a, b), (b, a), (-a, b), (b, -a), (a, -b), (-b, a), (-a, -b), (-b, -a)}:
            steps.append((dr, dc, cost))
    limit = math.ceil(cap) * one + one
    d = torch.where(
        zero, torch.zeros_like(zero, dtype=torch.long), torch.full_like(zero, limit, dtype=torch.long)
    )
    while True:
        big = F.pad(d, (2, 2, 2, 2), value=limit)
        new = d
        for dr, dc, cost in steps:
            new = torch.minimum(new, big[:, 2 + dr : 2 + dr + h, 2 + dc : 2 + dc + w] + cost)
        new = new.clamp(max=limit)
        if torch.equal(new, d):
            break
        d = new
    return (d.double() / one).clamp(max=cap)


def equalize_hist(u: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``equalizeHist`` on each (H, W) image of (N, H, W) integer values in 0..255: the lowest
    level present maps to 0, level ``j`` above it to ``round(255 cdf'(j) / (total - count(lowest)))``
    (float32, as OpenCV), ``cdf'`` counting the pixels above the lowest level up to ``j``; an image of one
    level keeps it."""
    out = torch.empty_like(u)
    for k in range(u.shape[0]):
        img = u[k].long()
        hist = torch.bincount(img.flatten(), minlength=256)
        first = int(torch.nonzero(hist)[0])
        total = img.numel()
        if int(hist[first]) == total:
            out[k] = first
            continue
        scale = torch.tensor(255.0 / (total - int(hist[first])), dtype=torch.float32)
        counts = hist.clone()
        counts[: first + 1] = 0
        lut = torch.round(torch.cumsum(counts, 0).to(torch.float32) * scale).clamp(0, 255)
        lut[: first + 1] = 0
        out[k] = lut.to(u.dtype)[img]
    return out


def _liquid_mask(layer: torch.Tensor, colour_scale: float) -> torch.Tensor:
    """The liquid branch's mask ``m`` (N, 1, H, W) from the thresholded layer (N, 1, H, W)."""
    u = torch.floor(layer[:, 0] * 255.0).remainder(256)  # numpy's astype(uint8) on values >= 0
    edges = canny(u, 50, 150)
    dist = chamfer_distance(edges, 20.0)
    dist = torch.floor(_box3(dist))  # blur (float), astype(uint8)
    dist = equalize_hist(dist)
    dist = _correlate3(dist, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "reflect").clamp(0, 255)  # filter2D, CV_8U
    dist = torch.round(_box3(dist))  # blur on uint8: rounded
    m = u * dist
    peak = m.flatten(1).amax(dim=1).view(-1, 1, 1)
    m = torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m))
    return (m * colour_scale)[:, None]


@corruption(
    family="digital",
    constants=(
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1.0, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    random=True,
)
def spatter(x: torch.Tensor, c: tuple[float, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Spatter: liquid (severities 1-3) or mud (4-5) splashed on the image.

    ``c = (loc, scale, sigma, threshold, intensity, mud)``. Per image a layer ``N(loc, scale^2)`` of the
    image's size, blurred (:func:`~bastion.corruptions.blur.gaussian_blur`'s kernel, std ``sigma``),
    values under ``threshold`` set to 0.

    - Liquid (``mud = 0``): the layer as 8-bit ``u = uint8(255 layer)``; OpenCV's Canny edges of ``u``
      (:func:`canny`, thresholds 50 and 150); the distance to them (:func:`chamfer_distance`, capped at 20),
      3x3 mean, to 8 bits, :func:`equalize_hist`, the 3x3 emboss filter ``[[-2, -1, 0], [-1, 1, 1],
      [0, 1, 2]]`` (saturated to 0..255), 3x3 mean rounded; ``m = u * that``, divided by its maximum,
      times ``intensity``; the image becomes ``x + m * (175, 238, 238) / 255`` (pale turquoise).
    - Mud (``mud = 1``): ``m`` = the Gaussian blur (std ``intensity``) of ``layer > threshold``, values
      under 0.8 set to 0; the image becomes ``x (1 - m) + m * (63, 42, 20) / 255`` (mud brown).

    ``c`` per severity 1..5 (CIFAR-10-C): (0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1). Draws:
    the noise ``(N, H, W)`` (standard normal). On one channel the colours are their grey levels.
    """
    loc, scale, sigma, threshold, intensity, mud = c
    n, _, h, w = x.shape
    colour = _colour(x, (63, 42, 20) if mud else (175, 238, 238))
    noise = torch.randn(n, 1, h, w, generator=generator, device=x.device, dtype=torch.float64)
    layer = gaussian_blur.kernel(noise * scale + loc, sigma, None)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    if mud:
        m = gaussian_blur.kernel((layer > threshold).double(), intensity, None)
        m = torch.where(m < 0.8, torch.zeros_like(m), m).to(x.dtype)
        return x * (1 - m) + colour * m
    return x + _liquid_mask(layer, intensity).to(x.dtype) * colour
