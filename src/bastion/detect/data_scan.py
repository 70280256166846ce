"""Training-data scanners: which training samples are poisoned or mislabeled, and is there any at all?

A scanner looks at a labelled training set through a model and returns a :class:`DataScanResult`: a
suspicion score per sample, the flagged set and a verdict per class. All scanners follow one honesty
rule: a sample is flagged only inside a class whose test statistic (``ClassScan.statistic``) reaches
the scanner's threshold, and clean classes stay below it. A clean training set therefore comes back
(almost) untouched, whatever its class balance; a scanner that removes a fixed share of every class
(Tran et al.'s 1.5·ε) flags clean data by construction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bastion.attacks.base import check_batch
from bastion.data.dataset import Dataset
from bastion.errors import DataError, DetectorError
from bastion.model import Classifier, as_classifier

__all__ = [
    "ClassScan",
    "DataScanResult",
    "DataScanner",
    "ScanProgress",
    "check_count",
    "check_labels",
    "skipped",
]

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
