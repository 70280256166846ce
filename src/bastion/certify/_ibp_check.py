"""The certifier's runtime self-check: the network's real outputs must lie inside the bounds.

The structural rules catch the known ways a network's forward can differ from the composition IBP
bounds; this catches the rest (a patched torch function, a dispatch mode, a dtype surprise). The
network is evaluated at each box's centre and at ``n`` seeded points in the box (half uniform
inside, half on vertices); every logit must lie in [lower - slack, upper + slack] and every margin
z_pred - z_j at least its lower bound - slack, with slack = tolerance × (1 + largest |logit| seen
for that input). Cost: one forward pass of the network over n × N extra inputs per batch of N.
"""

from __future__ import annotations

import torch

from bastion.errors import CertificationError
from bastion.model import TorchClassifier

__all__ = ["SELF_CHECK_FAILED", "points_in_boxes", "self_check"]

SELF_CHECK_FAILED = "the network computes something IBP did not bound"
"""How the self-check's refusal begins (the audit tells it from IBP's other refusals by it: BA211)."""

Bounds = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Logit lower and upper bounds (N, K) each and margin lower bounds (N, K), float64."""


def points_in_boxes(
    lower: torch.Tensor, upper: torch.Tensor, n: int, generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """(N, n, ...) points of ``dtype`` inside the boxes [lower, upper] (N, ...): the first n - n // 2
    uniform, the rest random vertices. Rounded to ``dtype`` towards the inside, never out of the box."""
    shape = (lower.shape[0], n, *lower.shape[1:])
    lo, up = lower[:, None].expand(shape), upper[:, None].expand(shape)
    u = torch.rand(shape, generator=generator, dtype=lower.dtype, device=lower.device)
    corner = torch.randint(0, 2, shape, generator=generator, device=lower.device).to(lower.dtype)
    inside = n - n // 2
    u = torch.cat([u[:, :inside], corner[:, inside:]], dim=1)
    exact = lo + u * (up - lo)
    pts = exact.to(dtype)
    if dtype != lower.dtype:
        # Rounding may step just outside the box: one step back towards it (the box is at least that wide).
        below, above = pts.to(lower.dtype) < lo, pts.to(lower.dtype) > up
        pts = torch.where(below, torch.nextafter(pts, torch.full_like(pts, torch.inf)), pts)
        pts = torch.where(above, torch.nextafter(pts, torch.full_like(pts, -torch.inf)), pts)
    return pts


def self_check(
    clf: TorchClassifier,
    x: torch.Tensor,
    box: tuple[torch.Tensor, torch.Tensor],
    logits: torch.Tensor,
    bounds: Bounds,
    tolerance: float,
    n: int,
    generator: torch.Generator,
    first: int = 0,
) -> torch.Tensor:
    """Raise :class:`CertificationError` unless ``clf``'s logits at the centres ``x`` (N, ...) (given:
    ``logits`` (N, K)) and at ``n`` points per box lie inside ``bounds``; returns the slack (N,).
    ``first`` is the index of ``x[0]`` in the whole input, for the message."""
    lower, upper = box
    outputs = [logits.to(torch.float64)[:, None]]
    if n > 0:
        pts = points_in_boxes(lower, upper, n, generator, x.dtype)
        outputs.append(clf(pts.flatten(0, 1)).to(torch.float64).view(x.shape[0], n, -1))
    z = torch.cat(outputs, dim=1)  # (N, 1 + n, K); point 0 is the centre
    lo, hi, margins = bounds
    slack = tolerance * (1 + z.abs().flatten(1).amax(1))
    s = slack[:, None, None]
    pred = logits.argmax(1)
    true_margins = z.gather(2, pred[:, None, None].expand(-1, z.shape[1], 1)) - z
    outside = (z < lo[:, None] - s) | (z > hi[:, None] + s)
    below = true_margins < margins[:, None] - s
    bad = outside | below
    if bool(bad.any()):
        i, p, k = (int(v) for v in bad.nonzero()[0])
        where = "its centre" if p == 0 else f"point {p} of its box"
        value, low, high = float(z[i, p, k]), float(lo[i, k]), float(hi[i, k])
        found = f"logit {k} is {value:.6g}, outside [{low:.6g}, {high:.6g}]"
        if not bool(outside[i, p, k]):
            value, low = float(true_margins[i, p, k]), float(margins[i, k])
            found = f"the margin over class {k} is {value:.6g}, below its bound {low:.6g}"
        raise CertificationError(
            f"{SELF_CHECK_FAILED}: for input {first + i} at {where}, {found} "
            f"(tolerance {tolerance:g} × (1 + max |logit|)); look for a patched torch function or layer, "
            "or raise tolerance for a low-precision network"
        )
    return slack
