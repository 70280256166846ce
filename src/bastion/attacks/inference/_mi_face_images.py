"""MI-Face's image priors and post-processing: total variation (a smoothness cost) and the denoise /
sharpen filters applied to the returned reconstructions only (Fredrikson et al. 2015, Section 5)."""

from __future__ import annotations

import torch

from bastion.errors import AttackError

__all__ = ["POSTPROCESS", "postprocess", "total_variation"]

POSTPROCESS = ("none", "denoise", "sharpen", "denoise-sharpen")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per sample (N,): mean absolute difference of neighbouring pixels of
    images (N, C, H, W)."""
    if x.dim() != 4:
        raise AttackError(f"tv_weight needs images (N, C, H, W), got shape {tuple(x.shape)}")
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def _blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 binomial blur per channel, edges replicated: (K, C, H, W) -> (K, C, H, W)."""
    kernel = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    k2 = (kernel[:, None] * kernel[None, :] / 16.0).expand(x.shape[1], 1, 3, 3)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.conv2d(padded, k2, groups=x.shape[1])


def postprocess(x: torch.Tensor, how: str) -> torch.Tensor:
    """``x`` (K, C, H, W) denoised (blur), sharpened (unsharp mask) or both, as ``how`` (one of
    :data:`POSTPROCESS`) says; ``none`` returns ``x`` itself, of any shape."""
    if how == "none":
        return x
    if x.dim() != 4:
        raise AttackError(f"postprocess={how!r} needs images (K, C, H, W), got {tuple(x.shape)}")
    if "denoise" in how:
        x = _blur(x)
    if "sharpen" in how:  # unsharp mask
        x = x + 0.5 * (x - _blur(x))
    return x
