"""Tabular records in the user's feature space, read from ``.csv`` / ``.csv.gz`` with a schema.

The feature matrix ``x`` (N, D) float64 holds numeric and integer features as their values and
ordinal/categorical features as the index into the feature's ``categories``; ``records`` turns rows
back into what a person would submit (codes as strings).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bastion.data._util import existing_path
from bastion.data.tabular import label_order
from bastion.errors import DataError
from bastion.tabular.schema import Feature, TabularSchema

__all__ = ["TabularData", "from_records", "load_tabular", "records"]


@dataclass(frozen=True)
class TabularData:
    """``x`` (N, D) float64 in user space, ``y`` (N,) long class indices, and the schema they follow."""

    x: torch.Tensor
    y: torch.Tensor
    schema: TabularSchema
    classes: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or self.x.shape[1] != len(self.schema):
            raise DataError(f"x must have shape (N, {len(self.schema)}), got {tuple(self.x.shape)}")
        if self.y.shape != (self.x.shape[0],):
            raise DataError(f"y must have shape ({self.x.shape[0]},), got {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor | slice) -> TabularData:
        return TabularData(self.x[index], self.y[index], self.schema, self.classes, self.source)

    def split(self, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[TabularData, TabularData]:
        """A seeded random (train, test) split."""
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_test = max(1, round(test_fraction * len(self)))
        return self.subset(perm[n_test:]), self.subset(perm[:n_test])

    def records(self, x: torch.Tensor | None = None) -> list[dict[str, Any]]:
        """Rows of ``x`` (default: this data) as the user's values."""
        return records(self.x if x is None else x, self.schema)


def records(x: torch.Tensor, schema: TabularSchema) -> list[dict[str, Any]]:
    """Rows of ``x`` (N, D) as dicts: codes (str) for ordinal/categorical, int for integer, float else."""
    out = []
    for row in x.detach().cpu().tolist():
        rec: dict[str, Any] = {}
        for f, v in zip(schema.features, row, strict=True):
            if f.discrete_codes:
                i = round(v)
                rec[f.name] = f.categories[i] if 0 <= i < len(f.categories) else f"<invalid index {v:g}>"
            elif f.kind == "integer":
                rec[f.name] = round(v)
            else:
                rec[f.name] = float(v)
        out.append(rec)
    return out


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: broken gzip file ({exc}); re-download or re-compress it") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from None


def _cell(f: Feature, raw: Any, lookup: dict[str, int], where: str) -> float:
    """One user value -> its user-space number; DataError naming ``where`` and the column."""
    cell = str(raw).strip()
    where = f"{where}, column {f.name!r}"
    if f.discrete_codes:
        if cell not in lookup:
            known = ", ".join(f.categories[:12]) + (" ..." if len(f.categories) > 12 else "")
            raise DataError(f"{where}: unknown code {cell!r} (known: {known}); add it to the schema")
        return float(lookup[cell])
    try:
        v = float(cell)
    except ValueError:
        raise DataError(f"{where}: {cell!r} is not a number ({f.kind} feature)") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: NaN or infinite value; clean the data first")
    if f.kind == "integer" and not v.is_integer():
        raise DataError(f"{where}: {cell!r} is not an integer; declare the feature numeric")
    return v


def from_records(rows: Iterable[Mapping[str, Any]], schema: TabularSchema) -> torch.Tensor:
    """User records (dicts, e.g. from :func:`records` or a JSON request) -> x (N, D) float64.

    The inverse of :func:`records`; the same checks as :func:`load_tabular` (unknown codes, non-numbers,
    missing or unknown keys raise a DataError naming the record and feature).
    """
    lookups = [{c: i for i, c in enumerate(f.categories)} for f in schema.features]
    out = []
    for n, rec in enumerate(rows):
        names = set(rec)
        if names != set(schema.names):
            schema.validate_columns([*rec, schema.label])
        where = f"record {n}"
        out.append([_cell(f, rec[f.name], lk, where) for f, lk in zip(schema.features, lookups, strict=True)])
    if not out:
        raise DataError("no records given")
    return torch.tensor(out, dtype=torch.float64)


def load_tabular(
    path: str | Path, schema: TabularSchema, *, label: str | None = None, ignore: Iterable[str] = ()
) -> TabularData:
    """Read a header-row CSV (``.csv`` or gzipped) whose columns match ``schema``.

    ``label`` defaults to ``schema.label``; columns in ``ignore`` (e.g. a row id) are skipped. Classes
    are ``schema.classes`` when given, else the sorted label values. Unknown codes, non-numeric or
    non-integral cells, empty cells and non-UTF-8 bytes raise a one-line DataError naming line and column.
    """
    source = existing_path(path, "a CSV file with a header row", directory=False)
    label = schema.label if label is None else label
    reader = csv.reader(io.StringIO(_read_text(source), newline=""))
    header = [h.strip() for h in next(reader, [])]
    if not header:
        raise DataError(f"{source}: empty file; expected a header row naming the columns")
    if label != schema.label:
        from dataclasses import replace

        schema = replace(schema, label=label)
    try:
        schema.validate_columns(header, ignore=ignore)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    cols = [header.index(n) for n in schema.names]
    label_at = header.index(label)
    lookups = [{c: i for i, c in enumerate(f.categories)} for f in schema.features]
    rows: list[list[float]] = []
    labels: list[str] = []
    for n, row in enumerate(reader):
        line = n + 2
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{source}: line {line} has {len(row)} fields, the header has {len(header)}")
        where = f"{source}: line {line}"
        rows.append(
            [
                _cell(f, row[i], lookup, where)
                for f, i, lookup in zip(schema.features, cols, lookups, strict=True)
            ]
        )
        labels.append(row[label_at].strip())
    if not rows:
        raise DataError(f"{source}: no data rows after the header")
    classes = schema.classes or tuple(label_order(set(labels)))
    index = {c: i for i, c in enumerate(classes)}
    bad = sorted(set(labels) - set(index))
    if bad:
        raise DataError(
            f"{source}: label value(s) {', '.join(bad[:5])} not in the schema's classes {classes}"
        )
    return TabularData(
        x=torch.tensor(rows, dtype=torch.float64),
        y=torch.tensor([index[v] for v in labels], dtype=torch.long),
        schema=schema,
        classes=tuple(classes),
        source=str(source),
    )
