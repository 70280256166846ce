"""Derandomized smoothing: a certificate against adversarial patches (Levine & Feizi, "(De)Randomized
Smoothing for Certifiable Defense against Patch Attacks", NeurIPS 2020).

The base classifier sees one *band* of the image at a time: ``size`` consecutive columns (column ablation)
or a ``size`` x ``size`` block (block ablation), wrapping around the edges, every other pixel ablated.
The smoothed classifier takes a vote over **every** band position (all ``W`` of them for columns, ``H * W``
for blocks), so it is deterministic: no sampling, no failure probability.

Why it certifies: a patch confined to ``m`` consecutive columns intersects at most ``Δ = m + size - 1``
column bands (an ``m`` x ``m`` square at most ``Δ²`` blocks); every other band sees the clean image and
votes as before. So if the top class ``c`` leads every other class ``c'`` by more than ``2Δ`` votes
(``n_c - Δ > n_c' + Δ``; equality is enough when ties break towards ``c``, the smaller index), no patch of
that size can change the prediction. The certified patch size of an input is the largest such ``m``.

Ablated pixels are encoded so that the base network can tell them from real ones: an input with C
channels in ``bounds`` becomes 2C channels, ``(u, 1 - u)`` on kept pixels (``u`` the pixel scaled to
[0, 1]) and ``(0, 0)`` on ablated ones, as in the paper. The base network therefore takes 2C channels;
:func:`train_ablated` trains one on random bands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.base import check_positive
from bastion.errors import CertificationError, DataError
from bastion.results import CertificationResult
from bastion.threat import Bounds, check_bounds

__all__ = [
    "Ablation",
    "DerandomizedSmoothing",
    "SoftVote",
    "encode",
    "random_bands",
    "train_ablated",
    "under_bands",
]

Kind = Literal["column", "block"]


@dataclass(frozen=True)
class Ablation:
    """Which pixels one base prediction keeps: ``kind`` ``"column"`` (a band of ``size`` columns) or
    ``"block"`` (a ``size`` x ``size`` block), at every position, wrapping around the edges."""

    kind: Kind = "column"
    size: int = 4

    def __post_init__(self) -> None:
        if self.kind not in ("column", "block"):
            raise CertificationError(f"ablation kind must be 'column' or 'block', got {self.kind!r}")
        check_positive("size", self.size, integer=True, error=CertificationError)

    def positions(self, h: int, w: int) -> int:
        """How many bands vote: ``w`` (columns) or ``h * w`` (blocks)."""
        self._fits(h, w)
        return w if self.kind == "column" else h * w

    def keep(self, h: int, w: int, pos: torch.Tensor) -> torch.Tensor:
        """(n, 1, h, w) float mask, 1 on the pixels band ``pos[i]`` keeps. Column ``p`` keeps columns
        ``p … p + size - 1`` (mod w); block ``p = r * w + c`` keeps rows ``r …`` and columns ``c …``."""
        self._fits(h, w)
        pos = pos.long()
        cols = (torch.arange(w, device=pos.device)[None] - (pos % w)[:, None]) % w < self.size
        if self.kind == "column":
            rows = torch.ones(pos.shape[0], h, dtype=torch.bool, device=pos.device)
        else:
            rows = (torch.arange(h, device=pos.device)[None] - (pos // w)[:, None]) % h < self.size
        return (rows[:, :, None] & cols[:, None, :]).to(torch.float32)[:, None]

    def bands_hit(self, m: int, h: int, w: int) -> int:
        """The most bands an ``m`` x ``m`` patch can touch (for columns: any patch within ``m`` columns)."""
        if m <= 0:
            return 0
        across_w = min(m + self.size - 1, w)
        if self.kind == "column":
            return across_w
        return across_w * min(m + self.size - 1, h)

    def _fits(self, h: int, w: int) -> None:
        if self.size > w or (self.kind == "block" and self.size > h):
            raise CertificationError(f"an ablation of size {self.size} does not fit a {h}x{w} image")


def encode(x: torch.Tensor, keep: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """(N, C, H, W) in ``bounds`` and a (N or 1, 1, H, W) keep mask -> (N, 2C, H, W): ``(u, 1 - u)`` on kept
    pixels, 0 on ablated ones (``u`` the input scaled to [0, 1])."""
    low, high = check_bounds(bounds)
    u = (x - low) / (high - low)
    keep = keep.to(x.dtype)
    return torch.cat([u * keep, (1 - u) * keep], dim=1)


def under_bands(x: torch.Tensor, keep: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """Every input of ``x`` (n, C, H, W) under every band of ``keep`` (p, 1, H, W), encoded:
    (n * p, 2C, H, W), input-major (input i's bands are rows i·p … i·p + p - 1)."""
    return encode(x.repeat_interleave(keep.shape[0], 0), keep.repeat(x.shape[0], 1, 1, 1), bounds)


def random_bands(
    x: torch.Tensor, ablation: Ablation, bounds: Bounds, generator: torch.Generator
) -> torch.Tensor:
    """Each input of ``x`` (n, C, H, W) under one band drawn from ``generator`` (on its device), encoded:
    (n, 2C, H, W). The training step of derandomized smoothing's base network."""
    h, w = int(x.shape[2]), int(x.shape[3])
    pos = torch.randint(
        0, ablation.positions(h, w), (x.shape[0],), generator=generator, device=generator.device
    )
    return encode(x, ablation.keep(h, w, pos.to(x.device)), bounds)


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise DataError(
            f"derandomized smoothing takes float images (N, C, H, W), got {getattr(x, 'shape', x)!r}"
        )


class SoftVote(nn.Module):
    """The smoothed classifier made differentiable for attacks: the mean over every band of the base
    network's softmax, returned as log-probabilities (use it to *attack* the defense; certificates come
    from the hard votes of :class:`DerandomizedSmoothing`)."""

    def __init__(self, base: nn.Module, ablation: Ablation, bounds: Bounds, chunk: int = 8) -> None:
        super().__init__()
        self.base, self.ablation, self.bounds, self.chunk = base, ablation, check_bounds(bounds), int(chunk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        n, _, h, w = x.shape
        total = self.ablation.positions(h, w)
        acc = None
        for lo in range(0, total, self.chunk):
            pos = torch.arange(lo, min(lo + self.chunk, total), device=x.device)
            batch = under_bands(x, self.ablation.keep(h, w, pos), self.bounds)
            probs = F.softmax(self.base(batch), dim=1).view(n, len(pos), -1).sum(1)
            acc = probs if acc is None else acc + probs
        assert acc is not None
        return torch.log(acc / total + 1e-12)


def softvote_of(model: Any) -> SoftVote | None:
    """The :class:`SoftVote` that ``model`` is, or wraps as a classifier's module; None otherwise. A
    classifier that normalises before its SoftVote is refused: the bands encode raw inputs."""
    if isinstance(model, SoftVote):
        return model
    inner = getattr(model, "module", None)
    if not isinstance(inner, SoftVote):
        return None
    if getattr(model, "mean", None) is not None or getattr(model, "std", None) is not None:
        raise CertificationError(
            "this classifier normalises inputs before its SoftVote, which encodes raw inputs itself; wrap "
            "the SoftVote without mean/std"
        )
    return inner


class DerandomizedSmoothing:
    """``DerandomizedSmoothing(kind="column", size=4, batch_size=512)``: certify a base network that takes
    encoded 2C-channel bands (:func:`encode`) against patches.

    :meth:`certify` returns a :class:`CertificationResult` whose ``radius`` is the certified patch side in
    pixels (``norm="patch"``): no patch within that many columns (column ablation) or that square (block
    ablation) changes the prediction. Deterministic; ``seed`` is accepted and unused.
    """

    def __init__(self, kind: Kind = "column", size: int = 4, batch_size: int = 512) -> None:
        self.ablation = Ablation(kind, int(size))
        check_positive("batch_size", batch_size, integer=True, error=CertificationError)
        self.batch_size = int(batch_size)

    def params(self) -> dict[str, int | str]:
        return {"kind": self.ablation.kind, "size": self.ablation.size, "batch_size": self.batch_size}

    @torch.no_grad()
    def votes(
        self,
        base: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        bounds: Bounds = (0.0, 1.0),
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """(N, K) int64: how many band positions vote for each class."""
        _check_images(x)
        n, _, h, w = x.shape
        total = self.ablation.positions(h, w)
        per = max(1, self.batch_size // n) if n < self.batch_size else 1
        counts: torch.Tensor | None = None
        for lo in range(0, total, per):
            pos = torch.arange(lo, min(lo + per, total), device=x.device)
            keep = self.ablation.keep(h, w, pos)
            for s in range(0, n, self.batch_size):
                xs = x[s : s + self.batch_size]
                logits = base(under_bands(xs, keep, bounds))
                if counts is None:
                    counts = torch.zeros(n, logits.shape[1], dtype=torch.long, device=x.device)
                labels = logits.argmax(1).view(xs.shape[0], len(pos))
                counts[s : s + xs.shape[0]].scatter_add_(1, labels, torch.ones_like(labels))
            if progress is not None:
                progress(int(pos[-1]) + 1, total)
        assert counts is not None
        return counts

    def certified_size(self, counts: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction (N,), certified patch side (N,) float64) from vote ``counts`` (N, K)."""
        # the top class, ties to the smaller index (argmax's rule, stable in torch)
        pred = counts.argmax(1)
        top = counts.gather(1, pred[:, None])[:, 0]
        others = counts.scatter(1, pred[:, None], -1)
        k = torch.arange(counts.shape[1], device=counts.device)[None]
        # the runner-up that matters: another class beats c on a tie if its index is smaller
        need = torch.where(k < pred[:, None], others + 1, others)  # c must reach need + 2Δ
        worst = need.amax(1) if counts.shape[1] > 1 else torch.zeros_like(top)
        gap = top - worst  # certified at Δ iff gap >= 2Δ
        size = torch.zeros(counts.shape[0], dtype=torch.float64, device=counts.device)
        limit = max(h, w)
        for m in range(1, limit + 1):
            ok = gap >= 2 * self.ablation.bands_hit(m, h, w)
            if not bool(ok.any()):
                break
            size[ok] = float(m)
        return pred, size

    def certify(
        self,
        base: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        *,
        bounds: Bounds = (0.0, 1.0),
        seed: int = 0,
        example_ids: torch.Tensor | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> CertificationResult:
        """Prediction and certified patch side for every input of ``x`` (N, C, H, W) in ``bounds``.

        ``base`` is the network over encoded bands, or the :class:`SoftVote` built on it (bare or inside a
        :class:`~bastion.model.Classifier`), whose base and bounds are then used; its ablation must be this
        certifier's. ``seed`` and ``example_ids`` are accepted for the shard runner and unused."""
        del seed, example_ids  # deterministic: every band votes
        soft = softvote_of(base)
        if soft is not None:
            if soft.ablation != self.ablation:
                raise CertificationError(
                    f"the SoftVote model ablates {soft.ablation}, this certifier {self.ablation}; certify it "
                    "with DerandomizedSmoothing(kind, size) equal to the model's own ablation"
                )
            base, bounds = soft.base, soft.bounds
        start = time.perf_counter()
        counts = self.votes(base, x, bounds, progress)
        pred, size = self.certified_size(counts, int(x.shape[2]), int(x.shape[3]))
        return CertificationResult(
            prediction=pred,
            radius=size,
            abstained=torch.zeros_like(pred, dtype=torch.bool),
            norm="patch",
            method=f"derandomized-{self.ablation.kind}",
            seconds=time.perf_counter() - start,
            params=self.params(),
        )

    def __repr__(self) -> str:
        return f"DerandomizedSmoothing(kind={self.ablation.kind!r}, size={self.ablation.size})"


def train_ablated(
    base: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ablation: Ablation,
    *,
    bounds: Bounds = (0.0, 1.0),
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> nn.Module:
    """Train ``base`` (2C input channels) on one random band per image per step (Adam, cross-entropy), the
    training derandomized smoothing needs. Deterministic for a seed on CPU; returns ``base`` in eval mode."""
    _check_images(x)
    check_positive("epochs", epochs, integer=True, error=CertificationError)
    check_positive("batch_size", batch_size, integer=True, error=CertificationError)
    n = x.shape[0]
    ablation.positions(int(x.shape[2]), int(x.shape[3]))  # a band that does not fit fails before training
    g = torch.Generator().manual_seed(int(seed))
    device = next(base.parameters()).device
    opt = torch.optim.Adam(base.parameters(), lr=lr)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    base.train()
    done = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            loss = F.cross_entropy(base(random_bands(xb, ablation, bounds, g)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if progress is not None:
                progress(done, steps)
    base.eval()
    return base
