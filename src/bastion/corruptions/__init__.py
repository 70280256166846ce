"""Common corruptions in the style of ImageNet-C / CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019).

>>> import torch
>>> from bastion.corruptions import get_corruption, corruption_accuracy
>>> g = torch.Generator().manual_seed(0)
>>> x_c = get_corruption("gaussian_noise")(x, 3, g)          # x: (N, C, H, W) in [0, 1]
>>> report = corruption_accuracy(model, x, y, ["gaussian_noise", "contrast"], seed=0)

Every corruption takes a severity 1..5 with the CIFAR-10-C constants of the paper's reference
generator; see docs/corruptions.md.
"""

from __future__ import annotations

from bastion.corruptions.base import SEVERITIES, Corruption, CorruptionThreat, check_severity
from bastion.corruptions.blur import defocus_blur, gaussian_blur, glass_blur, motion_blur, zoom_blur
from bastion.corruptions.digital import (
    brightness,
    contrast,
    elastic_transform,
    fog,
    jpeg_compression,
    pixelate,
    saturate,
)
from bastion.corruptions.evaluate import CorruptionReport, CorruptionRow, corruption_accuracy
from bastion.corruptions.noise import gaussian_noise, impulse_noise, shot_noise, speckle_noise
from bastion.corruptions.weather import snow, spatter
from bastion.errors import ThreatModelError

__all__ = [
    "CORRUPTIONS",
    "Corruption",
    "CorruptionReport",
    "CorruptionRow",
    "CorruptionThreat",
    "SEVERITIES",
    "brightness",
    "check_severity",
    "contrast",
    "corruption_accuracy",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "gaussian_blur",
    "gaussian_noise",
    "get_corruption",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "pixelate",
    "saturate",
    "shot_noise",
    "snow",
    "spatter",
    "speckle_noise",
    "zoom_blur",
]

CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        gaussian_noise,
        shot_noise,
        impulse_noise,
        speckle_noise,
        gaussian_blur,
        defocus_blur,
        motion_blur,
        zoom_blur,
        glass_blur,
        brightness,
        contrast,
        saturate,
        pixelate,
        jpeg_compression,
        elastic_transform,
        fog,
        snow,
        spatter,
    )
}


def get_corruption(name: str) -> Corruption:
    """The registered corruption called ``name`` (e.g. "gaussian_noise"); a typo raises
    :class:`ThreatModelError` listing the valid names."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in CORRUPTIONS:
        raise ThreatModelError(f"unknown corruption {name!r}; use one of: {', '.join(sorted(CORRUPTIONS))}")
    return CORRUPTIONS[key]
