"""Scanners that split each class in two groups: the shared decision of activation clustering and
spectral signatures (separation test, which group is the poison, per-sample scores)."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch

from bastion.data.dataset import Dataset
from bastion.detect.activations import PENULTIMATE, layer_activations
from bastion.detect.data_scan import (
    ClassScan,
    DataScanner,
    DataScanResult,
    ScanProgress,
    check_count,
    check_labels,
    skipped,
)
from bastion.detect.persistence import label_persistence
from bastion.errors import DataError, DetectorError
from bastion.model import Classifier

__all__ = ["Orient", "Reference", "SplitScanner", "principal_axes", "whitened"]

Orient = Callable[[int, torch.Tensor, torch.Tensor], tuple[bool, str]]
"""``orient(label, index (n,), minority (n,) bool) -> (majority is the poison, note)``."""

Reference = Callable[[torch.Tensor], torch.Tensor | None]
"""``reference(axes (D, k)) -> (k, k)``: the covariance, along ``axes``, of the *other* classes' activations
(each centred on its own class mean), or None when there is no other class: how the representation
varies in data the class's poison does not touch."""


def principal_axes(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The top ``k`` principal directions (D, k) of centred rows ``x`` (n, D), largest first.

    Exact (eigen-decomposition of the smaller Gram matrix) when n or D is at most 1024; beyond that,
    randomized subspace iteration (Halko et al. 2011: ``k + 10`` directions, 4 power steps) drawn from
    ``generator`` (seed 0 when None), never from the global RNG. Directions with (numerically) zero
    variance are dropped: fewer than ``k`` columns come back for rank-deficient data (dead units).
    """
    n, d = x.shape
    if min(n, d) > 1024:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        q = torch.randn(d, min(k + 10, d), generator=g, dtype=x.dtype).to(x.device)
        for _ in range(4):
            q = torch.linalg.qr(x.T @ (x @ q)).Q
        _, values, vh = torch.linalg.svd(x @ q, full_matrices=False)
        vectors, values = q @ vh.T[:, :k], values[:k].square()
    else:
        gram = x.T @ x if d <= n else x @ x.T
        values, vectors = torch.linalg.eigh(gram)
        values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
        if d > n:  # right singular vectors from the left ones
            vectors = (x.T @ vectors) / values.clamp(min=1e-300).sqrt()
    keep = values > values[:1].clamp(min=1e-300) * 1e-10
    return vectors[:, keep]


def check_ridge(ridge: object) -> float:
    """``ridge`` (a share of the reference's mean variance) as a float > 0; DetectorError otherwise."""
    ok = isinstance(ridge, int | float) and not isinstance(ridge, bool)
    if not ok or not 0.0 < float(ridge) < math.inf:  # type: ignore[arg-type]
        raise DetectorError(
            f"ridge is a share of the reference's mean variance (> 0, e.g. 0.01), got {ridge!r}"
        )
    return float(ridge)  # type: ignore[arg-type]


def whitened(
    x: torch.Tensor, reference: Reference, dims: int, ridge: float, generator: torch.Generator
) -> torch.Tensor:
    """Centred class activations ``x`` (n, D) in the class's top ``dims`` principal directions, whitened
    by the other classes' covariance there (``reference``) plus ``ridge`` times its mean variance: (n, k).

    A direction is then measured against how the representation varies in data the class's poison does
    not touch, so a shift that adds little *variance* but where the rest of the data is quiet stands out
    (docs/poisoning.md). Without another class (``reference`` gives None, or zero spread) the principal
    coordinates come back unwhitened; (n, 0) when ``x`` has no variance at all.
    """
    axes = principal_axes(x, dims, generator)
    z = x @ axes
    spread = reference(axes) if axes.shape[1] else None
    if spread is None or not float(spread.trace()) > 0:
        return z
    eye = torch.eye(spread.shape[0], dtype=z.dtype, device=z.device)
    factor = torch.linalg.cholesky(spread + ridge * float(spread.trace()) / spread.shape[0] * eye)
    return torch.linalg.solve_triangular(factor, z.T, upper=False).T


class SplitScanner(DataScanner):
    """Scanners that split each class's representation in two groups and test how far apart they lie.

    Per class (``n >= min_class_size`` samples), the subclass maps the class's centred activations of
    ``layer`` (n, D) to a one-dimensional discriminant ``s`` (n,) and a *minority* group (the smaller
    one). The decision is shared:

    - ``statistic`` = separation: (minority mean - majority mean of ``s``) / pooled within-group standard
      deviation. A class is suspicious when it reaches ``min_separation``.
    - ``scores`` = (s - majority mean) / majority standard deviation, signed so that the minority side
      is positive: how many clean-group standard deviations a sample lies towards the minority.
    - flagged = the poisoned group of a suspicious class: the minority, unless the majority's labels
      flip at least ``persistence_ratio`` times less often than the minority's when the inputs are
      overlaid with ``persistence_overlays`` inputs of other classes (:mod:`bastion.detect.persistence`:
      a backdoor outnumbering the class's clean samples). ``ClassScan.note`` records both shares. Two Gaussian
      groups ``d`` SD apart share about Φ(-d/2) of their samples across the boundary (d = 8: 2 in 10,000).

    False positives: a clean class always splits somehow, but not *far*: the best split of a Gaussian
    class lies 2.7 (1-D, large n) to under 5 SD apart (measured for the class sizes and dimensions the
    scanners use), and ``min_separation`` (default: the method's ``default_separation``) sits about
    twice as high. Nothing is flagged in a class below it, whatever the class sizes. What it cannot
    tell apart is a genuine, separate subpopulation of clean data (a writing style) from poison: such a
    class is reported, and its minority flagged.
    """

    default_separation: ClassVar[float] = 10.0

    def __init__(
        self,
        *,
        layer: str = PENULTIMATE,
        min_separation: float | None = None,
        seed: int = 0,
        min_class_size: int = 20,
        batch_size: int = 512,
        persistence_overlays: int = 16,
        persistence_ratio: float = 3.0,
    ) -> None:
        super().__init__(min_class_size=min_class_size, batch_size=batch_size)
        self.persistence_overlays = check_count("persistence_overlays", persistence_overlays, 1)
        ok = isinstance(persistence_ratio, int | float) and not isinstance(persistence_ratio, bool)
        if not ok or not 1.0 <= float(persistence_ratio) < math.inf:
            raise DetectorError(
                f"persistence_ratio must be a finite number >= 1, e.g. 3; got {persistence_ratio!r}"
            )
        self.persistence_ratio = float(persistence_ratio)
        if not isinstance(layer, str) or not layer:
            raise DetectorError(f"layer must be 'penultimate' or a sub-module name, got {layer!r}")
        if min_separation is None:
            min_separation = self.default_separation
        ok = isinstance(min_separation, int | float) and not isinstance(min_separation, bool)
        if not ok or not math.isfinite(min_separation) or min_separation <= 0:
            raise DetectorError(
                f"min_separation is a distance in standard deviations (> 0, e.g. 10), got {min_separation!r}"
            )
        self.layer = layer
        self.min_separation = float(min_separation)
        self.seed = check_count("seed", seed, 0)

    def _scan(self, model: Classifier, data: Dataset, progress: ScanProgress | None) -> DataScanResult:
        features = layer_activations(model, data.x, self.layer, batch_size=self.batch_size)
        generator = torch.Generator().manual_seed(self.seed + 1)

        def orient(label: int, index: torch.Tensor, group: torch.Tensor) -> tuple[bool, str]:
            # Overlays: a seeded sample of other classes' inputs (their labels are mostly clean).
            others = (data.y != label).nonzero().flatten()
            pick = others[torch.randperm(others.numel(), generator=generator)[: self.persistence_overlays]]
            overlays = data.x[pick]
            kept = [
                label_persistence(model, data.x[index[g]], label, overlays, generator=generator)
                for g in (group, ~group)
            ]
            # A backdoor's labels almost never flip; a clean group's flip often, and similarly often.
            swap = (1 - kept[1]) * self.persistence_ratio < 1 - kept[0]
            note = f"label persistence under overlays: minority {kept[0]:.0%}, majority {kept[1]:.0%}; " + (
                "the majority is flagged (it keeps its label)" if swap else "the minority is flagged"
            )
            return swap, note

        return self.scan_features(features, data.y, data.num_classes, orient=orient)

    def scan_features(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int | None = None,
        *,
        orient: Orient | None = None,
    ) -> DataScanResult:
        """Scan precomputed activations ``features`` (N, D) with ``labels`` (N,) in [0, num_classes).

        ``orient(label, index, minority)`` decides, for a suspicious class, whether the *majority* is
        the poison (``(swap, note)``); without it the minority is flagged. :meth:`scan` passes one that
        compares the groups' label persistence (:func:`bastion.detect.persistence.label_persistence`).
        """
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] == 0:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise DataError(f"features must be a non-empty (N, D) tensor of activations, got {shape}")
        if not bool(torch.isfinite(features).all()):
            raise DataError("features contain NaN or infinite values; check the model and the layer")
        y, k = check_labels(labels, features.shape[0], num_classes)
        y = y.to(features.device)
        scores = torch.zeros(features.shape[0], dtype=torch.float64, device=features.device)
        flagged = torch.zeros(features.shape[0], dtype=torch.bool, device=features.device)
        generator = torch.Generator().manual_seed(self.seed)
        # Class means (K, D), one class at a time: no full-size copy of the features.
        means = torch.zeros(k, features.shape[1], dtype=torch.float64, device=features.device)
        for c in range(k):
            if bool((y == c).any()):
                means[c] = features[y == c].to(torch.float64).mean(0)
        classes = []
        for c in range(k):
            index = (y == c).nonzero().flatten()
            if index.numel() < self.min_class_size:
                classes.append(skipped(c, index.numel(), self.min_class_size))
                continue
            x = features[index].to(torch.float64)
            s, minority = self._split(x - x.mean(0), generator, _reference(features, means, y, c))
            separation, z = _separation(s, minority)
            suspicious = separation >= self.min_separation
            note = ""
            if suspicious and orient is not None:
                swap, note = orient(c, index, minority)
                if swap:
                    minority = ~minority
                    separation, z = _separation(s, minority)
            hit = minority if suspicious else torch.zeros_like(minority)
            scores[index], flagged[index] = z, hit
            classes.append(ClassScan(c, index.numel(), int(hit.sum()), separation, suspicious, note))
        return DataScanResult(
            method=self.method,
            scores=scores.cpu(),
            flagged=flagged.cpu(),
            classes=tuple(classes),
            threshold=self.min_separation,
            params=self.params(),
            finding=self.finding,
        )

    @abstractmethod
    def _split(
        self, x: torch.Tensor, generator: torch.Generator, reference: Reference
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One class's centred activations ``x`` (n, D) float64 → discriminant (n,), minority (n,) bool.

        ``reference`` gives the other classes' within-class covariance along any axes (see :data:`Reference`).
        """


def _reference(features: torch.Tensor, means: torch.Tensor, y: torch.Tensor, label: int) -> Reference:
    """The :data:`Reference` of class ``label``: covariance of the other classes' ``features`` (N, D), each
    centred on its class mean (``means`` (K, D)), projected first so that only (N, k) values are made."""
    others = y != label
    m = int(others.sum())

    def covariance(axes: torch.Tensor) -> torch.Tensor | None:
        if m < 2:
            return None
        z = (features @ axes.to(features.dtype))[others].to(torch.float64) - (means @ axes)[y[others]]
        return z.T @ z / (m - 1)

    return covariance


def _separation(s: torch.Tensor, minority: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Separation of the two groups along ``s`` and the per-sample scores (see :class:`SplitScanner`)."""
    n_min = int(minority.sum())
    if n_min < 1 or n_min == s.numel():
        return 0.0, torch.zeros_like(s)
    major, minor = s[~minority], s[minority]
    if minor.mean() < major.mean():
        s, major, minor = -s, -major, -minor
    within = ((major - major.mean()).square().sum() + (minor - minor.mean()).square().sum()).div(
        max(s.numel() - 2, 1)
    )
    gap = float(minor.mean() - major.mean())
    pooled, spread = float(within.sqrt()), float(major.std()) if major.numel() > 1 else 0.0
    tiny = 1e-12 * (float(s.abs().max()) + 1e-300)
    # Two groups of identical points are infinitely far apart; a large finite number keeps JSON valid.
    separation = min(gap / pooled, 1e9) if pooled > tiny else (1e9 if gap > tiny else 0.0)
    z = (s - major.mean()) / max(spread, tiny) if spread > tiny or gap > tiny else torch.zeros_like(s)
    return separation, z
