"""Training-data scanners: which training samples are poisoned or mislabeled, and is there any at all?

A scanner looks at a labelled training set through a model and returns a :class:`DataScanResult`: a
suspicion score per sample, the flagged set and a verdict per class. All scanners follow one honesty
rule: a sample is flagged only inside a class whose test statistic (``ClassScan.statistic``) reaches
the scanner's threshold, and clean classes stay below it. A clean training set therefore comes back
(almost) untouched, whatever its class balance; a scanner that removes a fixed share of every class
(Tran et al.'s 1.5·ε) flags clean data by construction.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bastion.attacks.base import check_batch
from bastion.data.dataset import Dataset
from bastion.detect.activations import PENULTIMATE, layer_activations
from bastion.detect.persistence import label_persistence
from bastion.errors import DataError, DetectorError
from bastion.model import Classifier, as_classifier

__all__ = [
    "ClassScan",
    "DataScanResult",
    "DataScanner",
    "ScanProgress",
    "SplitScanner",
    "check_count",
    "check_labels",
    "principal_axes",
    "skipped",
]

Orient = Callable[[int, torch.Tensor, torch.Tensor], tuple[bool, str]]
"""``orient(label, index (n,), minority (n,) bool) -> (majority is the poison, note)``."""

ScanProgress = Callable[[int, int], None]
"""``progress(done, total)``: called by scanners that train models (label noise: folds trained)."""


@dataclass(frozen=True)
class ClassScan:
    """One class of the scanned data: ``n`` samples carry ``label``, ``n_flagged`` of them are flagged.

    ``statistic`` is the method's test quantity for "this class holds a poisoned (or mislabeled)
    subpopulation" (None when the class was not scanned, ``note`` says why); ``suspicious`` is whether it
    reached the scanner's threshold. Only suspicious classes have flagged samples.
    """

    label: int
    n: int
    n_flagged: int
    statistic: float | None
    suspicious: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "n": self.n,
            "n_flagged": self.n_flagged,
            "statistic": self.statistic,
            "suspicious": self.suspicious,
            "note": self.note,
        }


def skipped(label: int, n: int, min_class_size: int) -> ClassScan:
    """A class too small to test: never suspicious, nothing flagged, the reason recorded."""
    note = "no samples" if n == 0 else f"skipped: {n} samples, fewer than min_class_size={min_class_size}"
    return ClassScan(label, n, 0, None, False, note)


@dataclass(frozen=True)
class DataScanResult:
    """What a scan found in ``N`` training samples.

    - ``scores`` (N,) float64: higher = more suspicious; comparable within a class (in units the
      method documents), 0 for samples of classes that were not scanned.
    - ``flagged`` (N,) bool: the samples to remove; only in classes marked ``suspicious``.
    - ``classes``: one :class:`ClassScan` per class, in label order.
    - ``threshold``: a class is suspicious when its statistic reaches it.
    - ``finding``: what the method looks for ("poisoning" or "label noise"), for the verdict.
    - ``probabilities`` (N, K): out-of-fold class probabilities (label-noise scans only), e.g. to relabel.
    """

    method: str
    scores: torch.Tensor
    flagged: torch.Tensor
    classes: tuple[ClassScan, ...]
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)
    finding: str = "poisoning"
    probabilities: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.scores.shape[0] if self.scores.dim() == 1 else -1
        if n < 0 or self.flagged.shape != (n,) or self.flagged.dtype != torch.bool:
            raise DataError(
                f"scores must be (N,) and flagged (N,) bool; got {tuple(self.scores.shape)} and "
                f"{tuple(self.flagged.shape)} {self.flagged.dtype}"
            )
        if self.probabilities is not None and (
            self.probabilities.dim() != 2 or self.probabilities.shape[0] != n
        ):
            raise DataError(f"probabilities must be (N, K) with N={n}, got {tuple(self.probabilities.shape)}")
        if sum(c.n for c in self.classes) != n:
            raise DataError("the per-class counts do not add up to the number of scores")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def suspected(self) -> bool:
        """True when at least one class is suspicious (the CLI's exit code 1)."""
        return any(c.suspicious for c in self.classes)

    @property
    def suspicious_classes(self) -> tuple[int, ...]:
        return tuple(c.label for c in self.classes if c.suspicious)

    @property
    def flagged_indices(self) -> torch.Tensor:
        """Indices (M,) int64 of the flagged samples, ascending."""
        return self.flagged.nonzero().flatten()

    def clean_subset(self, dataset: Dataset) -> Dataset:
        """``dataset`` (the one that was scanned) without the flagged samples."""
        if len(dataset) != len(self):
            raise DataError(f"the scan covered {len(self)} samples but the dataset has {len(dataset)}")
        return dataset.subset((~self.flagged).nonzero().flatten())

    @property
    def verdict(self) -> str:
        """One sentence: what was suspected where, or that nothing was."""
        k, n = int(self.flagged.sum()), len(self)
        small = sum(1 for c in self.classes if c.statistic is None and c.n > 0)
        tail = f"; {small} class(es) too small to scan" if small else ""
        if self.suspected:
            labels = ", ".join(str(c) for c in self.suspicious_classes)
            flagged = f"{k} of {n} samples flagged ({k / n:.1%})"
            return f"{self.finding} suspected in class(es) {labels}: {flagged}{tail}"
        stats = [c.statistic for c in self.classes if c.statistic is not None]
        worst = f"largest statistic {max(stats):.3g} < threshold {self.threshold:.3g}" if stats else "none"
        return f"no sign of {self.finding} ({worst}){tail}"

    def precision_recall(self, truth: torch.Tensor) -> tuple[float, float]:
        """(precision, recall) of ``flagged`` against ``truth`` (N,) bool (True = really poisoned/noisy).

        Precision is 1.0 when nothing is flagged (no false alarm), recall 1.0 when nothing is poisoned.
        """
        t = self._truth(truth)
        hits = int((self.flagged & t).sum())
        n_flagged, n_true = int(self.flagged.sum()), int(t.sum())
        return (hits / n_flagged if n_flagged else 1.0, hits / n_true if n_true else 1.0)

    def false_positive_rate(self, truth: torch.Tensor) -> float:
        """Share of the clean samples (``~truth``) that were flagged."""
        t = self._truth(truth)
        clean = int((~t).sum())
        return int((self.flagged & ~t).sum()) / clean if clean else 0.0

    def _truth(self, truth: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(truth).to("cpu")
        if t.shape != (len(self),) or t.dtype != torch.bool:
            raise DataError(f"truth must be a ({len(self)},) bool tensor, got {tuple(t.shape)} {t.dtype}")
        return t

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: verdict, per-class table and flagged indices (no tensors)."""
        return {
            "method": self.method,
            "finding": self.finding,
            "suspected": self.suspected,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "params": self.params,
            "n_samples": len(self),
            "n_flagged": int(self.flagged.sum()),
            "classes": [c.to_dict() for c in self.classes],
            "flagged_indices": self.flagged_indices.tolist(),
        }


def check_labels(labels: torch.Tensor, n: int, num_classes: int | None) -> tuple[torch.Tensor, int]:
    """``labels`` (n,) as int64 on the CPU and the number of classes; DataError when malformed."""
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise DataError(f"labels must be a ({n},) tensor matching the samples, got {shape}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise DataError(f"labels must hold integer class indices, got {labels.dtype}")
    y = labels.detach().to("cpu", torch.long)
    k = int(y.max()) + 1 if num_classes is None else num_classes
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise DataError(f"labels must lie in [0, {k}), got [{int(y.min())}, {int(y.max())}]")
    return y, k


def check_count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DetectorError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class DataScanner(ABC):
    """Base of the training-data scanners. Hyperparameters at construction, then::

        result = ActivationClustering().scan(model, train_set)   # DataScanResult
        cleaned = result.clean_subset(train_set)

    ``scan`` validates the model and data (bounds, number of classes) and hands them to ``_scan``.
    Classes with fewer than ``min_class_size`` samples are not tested (recorded in ``ClassScan.note``).
    """

    method: ClassVar[str] = "scanner"
    finding: ClassVar[str] = "poisoning"

    def __init__(self, *, min_class_size: int = 20, batch_size: int = 512) -> None:
        self.min_class_size = check_count("min_class_size", min_class_size, 4)
        self.batch_size = check_count("batch_size", batch_size, 1)

    def scan(
        self, model: Classifier | nn.Module, data: Dataset, *, progress: ScanProgress | None = None
    ) -> DataScanResult:
        """Scan ``data`` (its x (N, ...) and labels y (N,)) as seen by ``model``."""
        if not isinstance(data, Dataset):
            raise DataError(f"scan takes a bastion Dataset (x, y, num_classes), got {type(data).__name__}")
        clf = as_classifier(model, bounds=data.bounds)
        check_batch(clf, data.x, doing="scanning it")
        with torch.no_grad():
            logits = clf(data.x[:1])
        if logits.dim() != 2 or logits.shape[1] != data.num_classes:
            raise DataError(
                f"the model outputs {tuple(logits.shape[1:])} logits but {data.name} has "
                f"{data.num_classes} classes; scan the data the model was trained on"
            )
        return self._scan(clf, data, progress)

    @abstractmethod
    def _scan(self, model: Classifier, data: Dataset, progress: ScanProgress | None) -> DataScanResult:
        """The method itself, on validated inputs."""

    def params(self) -> dict[str, Any]:
        """The hyperparameters, for results and reports."""
        return {k: v for k, v in vars(self).items() if isinstance(v, int | float | str | bool)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"


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
        classes = []
        for c in range(k):
            index = (y == c).nonzero().flatten()
            if index.numel() < self.min_class_size:
                classes.append(skipped(c, index.numel(), self.min_class_size))
                continue
            x = features[index].to(torch.float64)
            s, minority = self._split(x - x.mean(0), generator)
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
    def _split(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One class's centred activations ``x`` (n, D) float64 → discriminant (n,), minority (n,) bool."""


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
