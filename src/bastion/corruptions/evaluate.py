"""Accuracy under common corruptions, per corruption and severity (Hendrycks & Dietterich, ICLR 2019).

The paper reports corruption *error* normalised by AlexNet's (mCE) on ImageNet-C and plain error on
CIFAR-10-C; this reports plain accuracy (error = 1 - accuracy), clean and per (corruption, severity), with
per-corruption means over severities and their mean over corruptions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.corruptions.base import SEVERITIES, Corruption, CorruptionThreat, check_severity
from bastion.errors import DataError
from bastion.model import Classifier, predict
from bastion.threat import Bounds, check_bounds

__all__ = ["CorruptionReport", "CorruptionRow", "corruption_accuracy", "corruption_seed"]


@dataclass(frozen=True)
class CorruptionRow:
    """Accuracy of the model on every input corrupted by ``corruption`` at ``severity``."""

    corruption: str
    severity: int
    accuracy: float


@dataclass(frozen=True)
class CorruptionReport:
    """Clean accuracy and one :class:`CorruptionRow` per (corruption, severity) evaluated.

    ``skipped`` maps corruptions left out of a default (all) run to the reason (e.g. saturate on
    greyscale images). ``n`` inputs, corrupted with seeds derived from ``seed`` (:func:`corruption_seed`).
    """

    clean_accuracy: float
    rows: tuple[CorruptionRow, ...]
    n: int
    seed: int
    bounds: Bounds
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for acc in (self.clean_accuracy, *(r.accuracy for r in self.rows)):
            if not 0.0 <= acc <= 1.0:
                raise DataError(f"accuracies must lie in [0, 1], got {acc}")

    @property
    def per_corruption(self) -> dict[str, float]:
        """Mean accuracy over the evaluated severities, per corruption (in evaluation order)."""
        groups: dict[str, list[float]] = {}
        for row in self.rows:
            groups.setdefault(row.corruption, []).append(row.accuracy)
        return {name: sum(accs) / len(accs) for name, accs in groups.items()}

    @property
    def mean_accuracy(self) -> float:
        """Mean corruption accuracy: the mean over corruptions of :attr:`per_corruption` (NaN if none)."""
        means = list(self.per_corruption.values())
        return sum(means) / len(means) if means else float("nan")

    def accuracy(self, corruption: str, severity: int) -> float:
        """The accuracy of one (corruption, severity) row; a DataError names what was evaluated."""
        for row in self.rows:
            if row.corruption == corruption and row.severity == severity:
                return row.accuracy
        raise DataError(f"no row ({corruption!r}, {severity}); evaluated: {sorted(self.per_corruption)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors)."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "mean_corruption_accuracy": self.mean_accuracy if self.rows else None,
            "per_corruption": self.per_corruption,
            "rows": [
                {"corruption": r.corruption, "severity": r.severity, "accuracy": r.accuracy}
                for r in self.rows
            ],
            "n": self.n,
            "seed": self.seed,
            "bounds": list(self.bounds),
            "skipped": dict(self.skipped),
        }


def corruption_seed(seed: int, name: str, severity: int) -> int:
    """A 63-bit seed for one (corruption, severity), fixed by ``seed`` alone (independent of order)."""
    digest = hashlib.sha256(f"bastion.corruptions:{int(seed)}:{name}:{int(severity)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _resolve(
    corruptions: Sequence[str | Corruption | CorruptionThreat] | None,
    severities: tuple[int, ...],
    x: torch.Tensor,
) -> tuple[list[tuple[Corruption, tuple[int, ...]]], dict[str, str]]:
    from bastion.corruptions import CORRUPTIONS, get_corruption

    plan: list[tuple[Corruption, tuple[int, ...]]] = []
    skipped: dict[str, str] = {}
    if corruptions is None:
        for c in CORRUPTIONS.values():
            if x.shape[1] < c.min_channels:
                skipped[c.name] = f"needs {c.min_channels} channels, inputs have {x.shape[1]}"
            elif c.name in ("jpeg_compression", "snow", "spatter") and x.shape[1] not in (1, 3):
                skipped[c.name] = "needs 1 or 3 channels"
            else:
                plan.append((c, severities))
        return plan, skipped
    if isinstance(corruptions, str | Corruption | CorruptionThreat):
        corruptions = [corruptions]
    for item in corruptions:
        if isinstance(item, CorruptionThreat):
            plan.append((item.corruption, item.severities))
        elif isinstance(item, Corruption):
            plan.append((item, severities))
        else:
            plan.append((get_corruption(item), severities))
    return plan, skipped


@torch.no_grad()
def corruption_accuracy(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    corruptions: Sequence[str | Corruption | CorruptionThreat] | None = None,
    severities: Sequence[int] = SEVERITIES,
    *,
    seed: int = 0,
    batch_size: int = 256,
    bounds: tuple[float, float] | None = None,
) -> CorruptionReport:
    """Accuracy of ``model`` on ``x`` (N, C, H, W) inside ``bounds`` with labels ``y`` (N,), clean and
    under each corruption at each severity.

    ``corruptions``: names, :class:`Corruption` objects or :class:`CorruptionThreat` values (the latter
    carry their own severities); None runs every registered corruption that applies to the inputs
    (the others are listed in ``report.skipped``). ``bounds`` defaults to ``model.bounds``.

    Each (corruption, severity) draws from its own generator seeded by :func:`corruption_seed`, so a row
    does not depend on which other rows are run or in what order; it does depend on ``batch_size`` for
    random corruptions (the noise is drawn batch by batch). Inputs and the model are not modified.
    """
    low_high = check_bounds(bounds if bounds is not None else model.bounds)
    levels = tuple(check_severity(s) for s in severities)
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise DataError("x must be a float tensor of shape (N, C, H, W)")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0] or x.shape[0] == 0:
        raise DataError(f"y must be labels of shape (N,) with N = {x.shape[0]} >= 1 matching x")
    if int(batch_size) < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    plan, skipped = _resolve(corruptions, levels, x)

    def accuracy_of(batches: list[torch.Tensor]) -> float:
        preds = torch.cat([predict(model, b, batch_size=batch_size).argmax(dim=1).cpu() for b in batches])
        return int((preds == y.cpu()).sum()) / int(y.shape[0])

    n = x.shape[0]
    clean = accuracy_of([x[i : i + batch_size] for i in range(0, n, batch_size)])
    rows: list[CorruptionRow] = []
    for corruption, sevs in plan:
        for severity in sevs:
            g = torch.Generator(device=x.device).manual_seed(corruption_seed(seed, corruption.name, severity))
            batches = [
                corruption(x[i : i + batch_size], severity, g, bounds=low_high)
                for i in range(0, n, batch_size)
            ]
            rows.append(CorruptionRow(corruption.name, severity, accuracy_of(batches)))
    return CorruptionReport(clean, tuple(rows), n, int(seed), low_high, skipped)
