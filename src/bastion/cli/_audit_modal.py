"""``bastion audit`` for text and tabular models: which kind of audit a command line asks for, and the
model, data (a seeded ``--limit`` subset) and threat it audits. The spec loaders are the ones ``bastion
attack`` uses (:mod:`bastion.cli.text_attack`, :mod:`bastion.cli.tabular_attack`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from bastion.errors import BastionError

__all__ = ["Modality", "load_tabular_audit", "load_text_audit", "modality", "refuse_image_options"]

Modality = Literal["image", "text", "tabular"]


def modality(model: str, data: str, *, text_column: str | None, schema: Path | None) -> Modality:
    """``tabular`` with ``--schema``; ``text`` for a text-zoo model (``zoo:sst2-wordcnn``), a named text
    set (``sst2``), ``--text-column`` or a CSV whose header has a ``text`` column; else ``image``."""
    from bastion.text.data import TEXT_DATASETS
    from bastion.text.zoo import TEXT_ZOO

    if schema is not None:
        return "tabular"
    name = model.removeprefix("zoo:")
    data_name = data.removeprefix("text:").partition(":")[0]
    if name in TEXT_ZOO or data_name in TEXT_DATASETS or text_column is not None or data.startswith("text:"):
        return "text"
    return "text" if "text" in _csv_header(data) else "image"


def _csv_header(data: str) -> list[str]:
    """The column names of a ``csv:FILE`` / ``.csv[.gz]`` / ``.tsv[.gz]`` data spec ([] for anything else,
    or a file that cannot be read: the loader then says what is wrong)."""
    import csv
    import gzip

    path = Path(data.removeprefix("csv:"))
    lower = path.name.lower()
    if not (data.startswith("csv:") or lower.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz"))):
        return []
    try:
        opener = gzip.open if lower.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError, EOFError):
        return []
    delimiter = "\t" if lower.removesuffix(".gz").endswith(".tsv") else ","
    return [h.strip() for h in next(csv.reader([line], delimiter=delimiter), [])]


def refuse_image_options(kind: str, given: dict[str, Any], *, command: str = "audit") -> None:
    """A one-line error naming the image-only options given to a text or tabular audit (or evaluation)."""
    used = [name for name, value in given.items() if value not in (None, False, [], ())]
    if used:
        raise BastionError(
            f"{', '.join(used)} appl{'ies' if len(used) == 1 else 'y'} to image models; a {kind} {command} "
            f"runs its own attacks (see docs/{kind}.md)"
        )


def _subset_index(n: int, limit: int | None, seed: int) -> list[int] | None:
    """A seeded random subset of ``limit`` of ``n`` rows (as the image audit's ``--limit``), or None."""
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].tolist()


def load_text_audit(
    model: str, data: str, *, split: str, text_column: str | None, label: str | None, limit: int | None,
    seed: int,
) -> tuple[Any, Any]:  # fmt: skip
    """The text classifier and the (seeded subset of the) labelled texts; refuses a class mismatch."""
    from bastion.cli.text_attack import load_text_inputs

    clf, texts = load_text_inputs(model, data, split=split, text_column=text_column or "text", label=label)
    index = _subset_index(len(texts), limit, seed)
    if index is not None:
        texts = texts.subset(index)
    return clf, texts


def load_tabular_audit(
    model: str, data: str, *, schema: Path | None, threat_preset: str | None, budget: float | None,
    limit: int | None, seed: int,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """The tabular model, the (seeded subset of the) records and the threat: ``--threat-preset`` (with
    ``--budget`` overriding its budget) or the schema's own limits with ``--budget``."""
    from bastion.cli.tabular_attack import load_tabular_inputs

    clf, records, threat = load_tabular_inputs(model, data, schema, threat_preset, budget)
    index = _subset_index(len(records), limit, seed)
    if index is not None:
        records = records.subset(torch.tensor(index))
    return clf, records, threat
