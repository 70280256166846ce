"""Digital and weather corruptions (Hendrycks & Dietterich, ICLR 2019): brightness, contrast, saturate,
pixelate, JPEG compression and fog.

Constants: CIFAR-10-C, from the paper's reference generator ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness). Brightness and saturate act on HSV value and saturation; here in
closed form on RGB (an RGB pixel is ``V - V S t`` per channel with ``t`` set by the hue alone), with no
colour-space round trip. JPEG needs Pillow (``pip install 'bastion[images]'``).
"""

from __future__ import annotations

import io

import numpy as np
import torch

from bastion.corruptions.base import corruption
from bastion.errors import BastionError, DataError

__all__ = [
    "box_resize_matrix",
    "brightness",
    "contrast",
    "fog",
    "jpeg_compression",
    "pixelate",
    "plasma_fractal",
    "saturate",
]


@corruption(family="digital", constants=(0.05, 0.1, 0.15, 0.2, 0.3), random=False)
def brightness(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Brightness: HSV value ``V = max over channels`` raised to ``min(V + c, 1)``, hue and saturation
    kept, i.e. each pixel scaled by ``V' / V`` (black pixels become grey ``c``). On one channel this is
    ``min(x + c, 1)``.

    ``c`` per severity 1..5: 0.05, 0.1, 0.15, 0.2, 0.3 (CIFAR-10-C).
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(max=1.0)
    scale = torch.where(v > 0, v_new / v.clamp_min(1e-12), torch.zeros_like(v))
    return torch.where(v > 0, x * scale, v_new.expand_as(x))


@corruption(family="digital", constants=(0.75, 0.5, 0.4, 0.3, 0.15), random=False)
def contrast(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Contrast: ``(x - m) * c + m`` with ``m`` the mean of each image's channel over its pixels.

    ``c`` per severity 1..5: 0.75, 0.5, 0.4, 0.3, 0.15 (CIFAR-10-C).
    """
    m = x.mean(dim=(2, 3), keepdim=True)
    return (x - m) * c + m


@corruption(
    family="digital",
    constants=((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
    random=False,
    min_channels=3,
)
def saturate(x: torch.Tensor, c: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
    """Saturation: HSV saturation ``S`` set to ``clip(S * a + b, 0, 1)`` with ``(a, b) = c``, hue and value
    kept. Grey pixels (``S = 0``) get hue 0 (red) as scikit-image's ``rgb2hsv`` gives them.

    ``c`` per severity 1..5: (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2) (CIFAR-10-C): severities
    1-2 desaturate, 3-5 oversaturate, so the distance to the clean image is not monotone in severity.
    Needs RGB (the first three channels are used as R, G, B; more channels are refused, one is refused).
    """
    if x.shape[1] != 3:
        raise DataError(f"saturate needs RGB images (3 channels), got {x.shape[1]}")
    a, b = c
    v = x.amax(dim=1, keepdim=True)
    s = torch.where(v > 0, (v - x.amin(dim=1, keepdim=True)) / v.clamp_min(1e-12), torch.zeros_like(v))
    s_new = (s * a + b).clamp(0.0, 1.0)
    # per-channel position t in [0, 1] between value (t=0) and min (t=1); grey pixels use hue 0: (0, 1, 1)
    t_grey = torch.tensor([0.0, 1.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    t = torch.where(s > 0, (v - x) / (v * s).clamp_min(1e-12), t_grey)
    return v - v * s_new * t


def box_resize_matrix(size_in: int, size_out: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(size_out, size_in) matrix of Pillow's BOX resampling along one axis: output pixel ``o`` averages
    the input pixels whose centres fall in its footprint ``[o, o + 1) * size_in / size_out`` (on upscaling
    this is nearest-neighbour, as Pillow documents)."""
    scale = size_in / size_out
    centres = torch.arange(size_in, dtype=torch.float64) + 0.5
    lo = torch.arange(size_out, dtype=torch.float64)[:, None] * scale
    hit = (centres[None, :] >= lo) & (centres[None, :] < lo + scale)
    if scale < 1:  # each output centre takes the input pixel that contains it
        out_centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * scale
        hit = torch.floor(out_centres)[:, None] == torch.arange(size_in, dtype=torch.float64)[None, :]
    m = hit.to(torch.float64)
    return (m / m.sum(dim=1, keepdim=True)).to(dtype)


@corruption(family="digital", constants=(0.95, 0.9, 0.85, 0.75, 0.65), random=False)
def pixelate(x: torch.Tensor, c: float, generator: torch.Generator | None) -> torch.Tensor:
    """Pixelate: BOX-downscale each image to ``int(H c) x int(W c)`` and BOX-upscale back (as the reference
    does with Pillow's ``resize(..., BOX)``), done here as two resampling matrices per axis.

    ``c`` per severity 1..5: 0.95, 0.9, 0.85, 0.75, 0.65 (CIFAR-10-C). On small images neighbouring
    severities can coincide (8x8: sizes 7, 7, 6, 6, 5).
    """
    h, w = x.shape[2], x.shape[3]
    hs, ws = max(int(h * c), 1), max(int(w * c), 1)
    rows = box_resize_matrix(hs, h, dtype=x.dtype).to(x.device) @ box_resize_matrix(h, hs, dtype=x.dtype).to(
        x.device
    )
    cols = box_resize_matrix(ws, w, dtype=x.dtype).to(x.device) @ box_resize_matrix(w, ws, dtype=x.dtype).to(
        x.device
    )
    return rows @ x @ cols.T


@corruption(family="digital", constants=(80, 65, 58, 50, 40), random=False)
def jpeg_compression(x: torch.Tensor, c: int, generator: torch.Generator | None) -> torch.Tensor:
    """JPEG compression at Pillow quality ``c``: each image is quantised to 8 bits, saved as JPEG
    (greyscale "L" for one channel, "RGB" for three) and decoded. Needs Pillow.

    ``c`` per severity 1..5: 80, 65, 58, 50, 40 (CIFAR-10-C).
    """
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BastionError("jpeg_compression needs Pillow: pip install 'bastion[images]'") from exc
    channels = x.shape[1]
    if channels not in (1, 3):
        raise DataError(f"jpeg_compression needs 1 or 3 channels, got {channels}")
    u8 = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for img in u8:
        pil = Image.fromarray(np.ascontiguousarray(img[:, :, 0] if channels == 1 else img))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(c))
        buf.seek(0)
        decoded = torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32) / 255.0)
        out.append(decoded.reshape(x.shape[2], x.shape[3], channels))
    return torch.stack(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)


def plasma_fractal(
    n: int, size: int, decay: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``n`` diamond-square height maps of side ``size`` (a power of two), each rescaled to [0, 1].

    Fournier, Fussell & Carpenter (1982) midpoint displacement: squares then diamonds, each new point the
    mean of its four neighbours (wrapping around) plus uniform noise whose amplitude starts at 100 and is
    divided by ``decay`` at every halving of the step, as in the reference generator's fog.
    """
    m = torch.zeros(n, size, size, dtype=torch.float64, device=device)
    step, wibble = size, 100.0

    def displaced(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, device=device, dtype=torch.float64)
        return total / 4 + wibble * (noise * 2 * wibble - wibble)

    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        squares = corners + corners.roll(-1, dims=1)
        m[:, half::step, half::step] = displaced(squares + squares.roll(-1, dims=2))
        centres, corners = m[:, half::step, half::step], m[:, ::step, ::step]
        m[:, ::step, half::step] = displaced(
            centres + centres.roll(1, dims=1) + corners + corners.roll(-1, 2)
        )
        m[:, half::step, ::step] = displaced(
            centres + centres.roll(1, dims=2) + corners + corners.roll(-1, 1)
        )
        step, wibble = half, wibble / decay
    flat = m.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    return (m - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]


@corruption(
    family="digital", constants=((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75)), random=True
)
def fog(x: torch.Tensor, c: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
    """Fog: a plasma-fractal haze ``c[0] * plasma`` (roughness ``c[1]``, :func:`plasma_fractal`, one map
    per image shared by its channels) added, then the image rescaled by ``max / (max + c[0])`` with
    ``max`` the clean image's maximum.

    ``c = (thickness, decay)`` per severity 1..5: (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)
    (CIFAR-10-C, which draws a 32x32 map; here the map is the next power of two above the image side).
    """
    n, _, h, w = x.shape
    size = 1 << max(max(h, w) - 1, 1).bit_length()
    haze = plasma_fractal(n, size, c[1], generator, x.device)[:, None, :h, :w].to(x.dtype)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + c[0] * haze) * peak / (peak + c[0])
