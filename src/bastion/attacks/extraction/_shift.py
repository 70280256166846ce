"""Random translation of image batches, the one augmentation clone training uses.

A label-only clone sees each query's top-1 and nothing else; an image classifier's top-1 rarely changes
when its input moves by a pixel or two, so training on shifted copies of the queries multiplies what
each query teaches at no query cost. Soft targets are not shifted (the released probabilities belong to
the exact input sent, and moving it makes them wrong where they carry the most: their small entries).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_shift", "shift_pixels"]


MIN_SIDE = 16  # below it one pixel is too large a move to assume the label survives it


def shift_pixels(input_shape: tuple[int, ...], share: float) -> int:
    """Pixels of shift for ``share`` of the shorter image side; 0 for non-image inputs and for images
    whose shorter side is under 16 pixels (on 8x8 digits one pixel is an eighth of the image: a linear
    victim loses 12 points of clone fidelity to a one-pixel shift)."""
    if len(input_shape) != 3 or share <= 0 or min(input_shape[1], input_shape[2]) < MIN_SIDE:
        return 0
    return round(share * min(input_shape[1], input_shape[2]))


def random_shift(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with each image moved by an independent integer offset in [-pixels, pixels]
    along each axis; the uncovered border is filled by replicating the edge (no new intensities)."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels), mode="replicate")
    dy = torch.randint(0, 2 * pixels + 1, (n,), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(0, 2 * pixels + 1, (n,), generator=generator, device=generator.device).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]  # (N, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indexing on dims 0, 2, 3 puts the channel dim last: (N, H, W, C)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
