"""The black-box gradient MI-Face uses: an antithetic NES estimate from released confidences only.

Wierstra et al. 2014 (natural evolution strategies); Ilyas, Engstrom, Athalye & Lin, "Black-box
adversarial attacks with limited queries and information", ICML 2018: for ``m = samples / 2`` Gaussian
directions u_i, ``g = sum_i (p(x + sigma u_i) - p(x - sigma u_i)) u_i / (2 sigma m)``, with the probes
clipped into the bounds. One call sends ``samples + 1`` rows per input (the +1 is ``p`` at x itself).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bastion.threat import Bounds

__all__ = ["nes_gradient"]

Confidence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``confidence(rows (R, ...), classes (R,)) -> released p_k (R,)``, counted by whoever answers it."""


def nes_gradient(
    confidence: Confidence,
    x: torch.Tensor,
    k: torch.Tensor,
    *,
    samples: int,
    sigma: float,
    bounds: Bounds,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_k at x (R,), estimated gradient of p_k (R, ...)) for rows x (R, ...) and classes k (R,), from
    one batched ``confidence`` call of R * (samples + 1) rows; directions are drawn from ``generator``
    (CPU) and moved to x's device, so the estimate is the same on every device."""
    low, high = bounds
    m = samples // 2
    u = torch.randn((x.shape[0], m, *x.shape[1:]), generator=generator).to(x.device, x.dtype)
    probes = torch.cat([x[:, None] + sigma * u, x[:, None] - sigma * u], 1)
    probes = probes.clamp(low, high).flatten(0, 1)
    rows = torch.cat([x, probes])
    kk = torch.cat([k, k.repeat_interleave(2 * m)])
    p_all = confidence(rows, kk)
    p, pp = p_all[: x.shape[0]], p_all[x.shape[0] :].view(x.shape[0], 2 * m)
    diff = (pp[:, :m] - pp[:, m:]).view(x.shape[0], m, *([1] * (x.dim() - 1)))
    return p, (diff * u).sum(1) / (2 * sigma * m)
