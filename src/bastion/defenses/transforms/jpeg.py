"""JPEG compression as a defense (Dziugaite et al. 2016; Das et al. 2017; Guo et al. 2018), in torch.

The baseline JPEG codec (ITU T.81), batched on the input's device: 8-bit levels, JFIF RGB -> YCbCr for
3-channel images (other channel counts are coded channel by channel as luminance), no chroma
subsampling (4:4:4, Pillow's ``subsampling=0``), edge-replicated padding to multiples of 8, level shift,
8x8 orthonormal DCT-II, quantisation with the Annex K luminance / chrominance tables scaled by
``quality`` exactly as libjpeg's ``jpeg_quality_scaling`` does, rounding, and the inverse. Entropy
coding is lossless and omitted.

BPDA surrogate: the identity (Athalye, Carlini & Wagner 2018 broke JPEG defenses with exactly that).
JPEG at useful qualities is close to the identity, which is BPDA's condition, and the alternative,
Shin & Song's (2017) cubic rounding ``round(t) + (t - round(t))**3``, has a vanishing gradient at
every coefficient that quantises to an integer exactly, including the many high-frequency ones
quantised to zero, which would weaken the adaptive attack rather than strengthen it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import torch
import torch.nn.functional as F

from bastion.defenses.transforms.base import DefenseError, Transform, check_images

__all__ = ["JPEG", "quantization_table"]

_LUMINANCE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMINANCE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
# JFIF: YCbCr = RGB @ _RGB_TO_YCC.T + (0, 128, 128)
_RGB_TO_YCC = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)


def quantization_table(quality: int, *, chroma: bool = False) -> torch.Tensor:
    """The (8, 8) quantisation table libjpeg uses at ``quality`` (1-100), baseline (entries 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor(_CHROMINANCE if chroma else _LUMINANCE, dtype=torch.float64)
    return torch.clamp(torch.floor((base * scale + 50) / 100), 1, 255)


@cache
def _dct_matrix() -> torch.Tensor:
    """Orthonormal DCT-II (8, 8): row u holds c(u) cos((2j + 1) u pi / 16); JPEG's 2-D DCT is D B D^T."""
    j = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * j[None, :] + 1) * j[:, None] * torch.pi / 16) * (2 / 8) ** 0.5
    d[0] /= 2**0.5
    return d


@dataclass(frozen=True)
class JPEG(Transform):
    """JPEG-compress and decode images (N, C, H, W) at ``quality`` in 1..100 (100: near-lossless).

    Deterministic. Output values lie on 256 levels of the bounds, like a decoded 8-bit image.
    """

    quality: int = 75
    name: ClassVar[str] = "jpeg"

    def __post_init__(self) -> None:
        q = self.quality
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100:
            raise DefenseError(f"JPEG quality must be an integer from 1 to 100, got {q!r}")

    def _apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(x, "JPEG")
        n, c, h, w = x.shape
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        pixels = torch.round(x.to(dtype) * 255)
        colour = c == 3
        mix = torch.tensor(_RGB_TO_YCC, dtype=dtype, device=x.device)
        offset = torch.tensor([0.0, 128.0, 128.0], dtype=dtype, device=x.device).view(1, 3, 1, 1)
        if colour:
            pixels = torch.round(torch.einsum("kc,nchw->nkhw", mix, pixels) + offset)  # 8-bit YCbCr
        pad_h, pad_w = -h % 8, -w % 8
        if pad_h or pad_w:
            pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")
        hb, wb = pixels.shape[2] // 8, pixels.shape[3] // 8
        blocks = pixels.reshape(n, c, hb, 8, wb, 8).permute(0, 1, 2, 4, 3, 5) - 128
        d = _dct_matrix().to(x.device, dtype)
        q = self._tables(c, colour).to(x.device, dtype).view(1, c, 1, 1, 8, 8)
        coeffs = d @ blocks @ d.T
        blocks = d.T @ (torch.round(coeffs / q) * q) @ d + 128
        pixels = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * 8, wb * 8)[:, :, :h, :w]
        if colour:  # the decoder range-limits the 8-bit YCbCr samples before converting back
            pixels = torch.round(pixels).clamp(0, 255)
            pixels = torch.einsum("kc,nchw->nkhw", torch.linalg.inv(mix), pixels - offset)
        return (torch.round(pixels).clamp(0, 255) / 255).to(x.dtype)

    def _tables(self, channels: int, colour: bool) -> torch.Tensor:
        luma = quantization_table(self.quality)
        if not colour:
            return luma.expand(channels, 8, 8)
        chroma = quantization_table(self.quality, chroma=True)
        return torch.stack([luma, chroma, chroma])

    def spec(self) -> str:
        return f"jpeg:{self.quality}"
