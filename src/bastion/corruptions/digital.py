"""Digital and weather corruptions (Hendrycks & Dietterich, ICLR 2019): brightness, contrast, saturate,
pixelate, JPEG compression, elastic transform and fog.

Constants: CIFAR-10-C, from the paper's reference generator ``ImageNet-C/create_c/make_cifar_c.py``
(github.com/hendrycks/robustness). Brightness and saturate act on HSV value and saturation; here in
closed form on RGB (an RGB pixel is ``V - V S t`` per channel with ``t`` set by the hue alone), with no
colour-space round trip. JPEG needs Pillow (``pip install 'bastion[images]'``).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from bastion.corruptions.base import corruption
from bastion.errors import BastionError, DataError

__all__ = [
    "box_resize_matrix",
    "brightness",
    "bilinear_sample",
    "contrast",
    "elastic_transform",
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


def _fold_mirror(index: torch.Tensor, length: int) -> torch.Tensor:
    """Integer indices folded into ``0..length - 1`` by mirroring about the end pixels (``gfedcb|abcdefgh|
    gfedcba``: OpenCV's BORDER_REFLECT_101, SciPy's "mirror")."""
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    m = index.remainder(period)
    return torch.where(m >= length, period - m, m)


def _fold_reflect(index: torch.Tensor, length: int) -> torch.Tensor:
    """Integer indices folded into ``0..length - 1`` by mirroring about the pixel edges, repeating the end
    pixels (``hgfedcba|abcdefgh|hgfedcba``: SciPy's "reflect")."""
    period = 2 * length
    m = index.remainder(period)
    return torch.where(m >= length, period - 1 - m, m)


def bilinear_sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, *, border: str) -> torch.Tensor:
    """``x`` (N, C, H, W) sampled at real pixel coordinates ``rows``, ``cols`` (N, H', W') by bilinear
    interpolation, the neighbours outside the image taken by ``border``: "mirror" (OpenCV's
    BORDER_REFLECT_101) or "reflect" (SciPy's "reflect", which repeats the edge pixel)."""
    n, channels, h, w = x.shape
    fold = _fold_mirror if border == "mirror" else _fold_reflect
    r0, c0 = torch.floor(rows), torch.floor(cols)
    fr, fc = (rows - r0).to(x.dtype), (cols - c0).to(x.dtype)
    r0, c0 = r0.long(), c0.long()
    flat = x.reshape(n, channels, h * w)

    def at(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        index = (fold(r, h) * w + fold(q, w)).reshape(n, 1, -1).expand(n, channels, -1)
        return flat.gather(2, index).reshape(n, channels, *rows.shape[1:])

    fr, fc = fr[:, None], fc[:, None]
    top = at(r0, c0) * (1 - fc) + at(r0, c0 + 1) * fc
    bottom = at(r0 + 1, c0) * (1 - fc) + at(r0 + 1, c0 + 1) * fc
    return top * (1 - fr) + bottom * fr


def _smooth_reflect(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """SciPy's ``gaussian_filter(field, sigma, mode="reflect", truncate=3)`` on (N, H, W) fields."""
    if sigma <= 0:
        return field
    radius = int(3.0 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, device=field.device, dtype=torch.float64)
    taps = torch.exp(-0.5 * (taps / sigma) ** 2)
    taps = (taps / taps.sum()).to(field.dtype)
    out = field
    for dim in (1, 2):
        length = out.shape[dim]
        index = _fold_reflect(torch.arange(-radius, length + radius, device=field.device), length)
        padded = out.index_select(dim, index).movedim(dim, -1)  # (..., length + 2 radius)
        lead = padded.shape[:-1]
        conv = F.conv1d(padded.reshape(-1, 1, padded.shape[-1]), taps.view(1, 1, -1))
        out = conv.reshape(*lead, length).movedim(-1, dim)
    return out


@corruption(
    family="digital",
    constants=((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    random=True,
)
def elastic_transform(
    x: torch.Tensor, c: tuple[float, float, float], generator: torch.Generator | None
) -> torch.Tensor:
    """Elastic transform: a random affine warp, then a smooth random displacement field.

    ``c = (alpha, sigma, affine)`` as fractions of the image side ``L = min(H, W)`` (the reference writes
    them as ``IMSIZE * fraction``); in pixels ``L c``. Per image: the three points ``(cx + s, cy + s)``,
    ``(cx + s, cy - s)``, ``(cx - s, cy - s)`` (``cx = W // 2``, ``cy = H // 2``, ``s = min(H, W) // 3``)
    are moved by offsets uniform in ``[-affine, affine]``, and the image is warped by the affine map that
    takes them there (bilinear, mirrored borders: OpenCV's ``warpAffine`` with BORDER_REFLECT_101). Then
    ``dx``, ``dy`` = ``alpha *`` (uniform [-1, 1] noise Gaussian-smoothed with std ``sigma``, truncated at 3
    std, SciPy "reflect" borders) and pixel ``(i, j)`` takes the warped image's value at ``(i + dy,
    j + dx)`` (bilinear, SciPy "reflect" borders, as ``map_coordinates(order=1)``).

    ``c`` per severity 1..5: (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03) (CIFAR-10-C, ``IMSIZE = 32``: on 32x32 images (0, 0, 2.56), (1.6, 6.4, 2.24),
    (2.56, 1.92, 1.92), (3.2, 1.28, 1.6), (3.2, 0.96, 0.96) pixels). Draws, in order: the affine offsets
    ``(N, 3, 2)``, then the noise ``(N, 2, H, W)`` (dx, dy). Images under 3 pixels a side get no affine
    part (the three points coincide).
    """
    n, _, h, w = x.shape
    alpha, sigma, affine = (min(h, w) * f for f in c)
    f64 = torch.float64
    cx, cy, s = w // 2, h // 2, min(h, w) // 3
    pts1 = torch.tensor([[cx + s, cy + s], [cx + s, cy - s], [cx - s, cy - s]], dtype=f64, device=x.device)
    shift = torch.rand(n, 3, 2, generator=generator, device=x.device, dtype=f64) * (2 * affine) - affine
    ii = torch.arange(h, device=x.device, dtype=f64)[:, None].expand(h, w)
    jj = torch.arange(w, device=x.device, dtype=f64)[None, :].expand(h, w)
    warped = x
    if s > 0:
        # warpAffine samples the source at M^-1 (x, y): the affine map taking pts2 back to pts1
        homogeneous = torch.cat([pts1 + shift, torch.ones(n, 3, 1, dtype=f64, device=x.device)], dim=2)
        inverse = torch.linalg.solve(homogeneous, pts1.expand(n, 3, 2))  # (N, 3, 2): [x y 1] @ inverse
        grid = torch.stack([jj, ii, torch.ones_like(ii)], dim=-1)  # (H, W, 3): x, y, 1
        source = torch.einsum("hwk,nkd->nhwd", grid, inverse)
        warped = bilinear_sample(x, source[..., 1], source[..., 0], border="mirror")
    noise = torch.rand(n, 2, h, w, generator=generator, device=x.device, dtype=f64) * 2 - 1
    dx = _smooth_reflect(noise[:, 0], sigma) * alpha
    dy = _smooth_reflect(noise[:, 1], sigma) * alpha
    return bilinear_sample(warped, ii + dy, jj + dx, border="reflect")
