"""Tabular data from a CSV file with a header row: numeric feature columns plus one label column."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from bastion.data._util import existing_path
from bastion.data.dataset import Dataset
from bastion.errors import DataError

__all__ = ["label_order", "load_csv"]


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def label_order(values: set[str]) -> list[str]:
    """Class names in index order: numbers by value ("2" before "10"), anything else as text. Image,
    text and tabular CSV labels all map to classes this way."""
    numbers = {v: _as_number(v) for v in values}
    if all(n is not None and not math.isnan(n) for n in numbers.values()):
        return sorted(values, key=lambda v: (numbers[v], v))
    return sorted(values)


def load_csv(path: str | Path, label: str | None = None) -> Dataset:
    """x (N, D) float32 from every column but ``label``; y (N,) from the ``label`` column.

    Label values map to class indices in sorted order (numerically when all are numbers) and become
    the class names. Bounds are the global (min, max) of the features. A ``.tsv`` file is read
    tab-separated. Empty or non-numeric feature cells and NaN raise a DataError naming the row.
    """
    source = existing_path(path, "a CSV file with a header row", directory=False)
    delimiter = "\t" if source.suffix.lower() == ".tsv" else ","
    with source.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        rows = [r for r in reader if r]
    if not header:
        raise DataError(f"{source}: empty file; expected a header row naming the columns")
    columns = ", ".join(header)
    if label is None:
        raise DataError(f"{source}: name the label column (label=...); columns: {columns}")
    if label not in header:
        raise DataError(f"{source}: no label column {label!r}; columns: {columns}")
    if len(header) < 2:
        raise DataError(f"{source}: only the label column {label!r}; no feature columns")
    label_at = header.index(label)
    features = [i for i in range(len(header)) if i != label_at]
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    labels: list[str] = []
    for n, row in enumerate(rows):
        line = n + 2  # 1-based, after the header
        if len(row) != len(header):
            raise DataError(f"{source}: line {line} has {len(row)} fields, the header has {len(header)}")
        for j, i in enumerate(features):
            value = _as_number(row[i])
            if value is None:
                raise DataError(f"{source}: line {line}, column {header[i]!r}: {row[i]!r} is not a number")
            if not math.isfinite(value):
                raise DataError(f"{source}: line {line}, column {header[i]!r}: NaN or infinite value")
            x[n, j] = value
        labels.append(row[label_at].strip())
    if not rows:
        raise DataError(f"{source}: no data rows after the header")
    class_names = label_order(set(labels))
    index = {name: i for i, name in enumerate(class_names)}
    x32 = x.astype(np.float32)  # bounds from the float32 values, so rounding cannot step outside them
    low, high = float(x32.min()), float(x32.max())
    if low == high:
        raise DataError(f"{source}: every feature value is {low}; cannot infer input bounds")
    return Dataset(
        torch.from_numpy(x32),
        torch.tensor([index[v] for v in labels], dtype=torch.long),
        num_classes=len(class_names),
        bounds=(low, high),
        class_names=tuple(class_names),
        name=source.stem,
        meta={
            "path": str(source),
            "label": label,
            "features": [header[i] for i in features],
            "bounds_source": "data",  # the features' observed range, not declared (audit: BA110)
        },
    )
