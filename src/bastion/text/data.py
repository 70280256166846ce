"""Labelled text from CSV/TSV files (plain or gzipped), seeded stratified splits, and the named sets in
``../shared/data/text`` (SST-2, SMS spam, AG News test, Davidson hate speech, TextFooler's 1k subsets).

Texts are kept exactly as the file gives them (no lower-casing, no entity decoding): the model wrapper
owns preprocessing, so attacks and the sanitiser see what a user would have sent.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bastion.data._util import existing_path
from bastion.data.tabular import label_order  # the same label order as tabular CSVs
from bastion.errors import DataError

__all__ = [
    "DATA_ENV",
    "TEXT_DATASETS",
    "TextData",
    "load_text_csv",
    "load_text_dataset",
    "split_index_sha256",
    "stratified_split",
    "text_data_root",
    "texts_sha256",
]

DATA_ENV = "BASTION_DATA"


def texts_sha256(texts: Sequence[str], labels: torch.Tensor) -> str:
    """sha256 over the texts (UTF-8, each length-prefixed) and the int64 labels: one digest per data set
    (the audit's data digest, the shard runner's run identity)."""
    h = hashlib.sha256()
    for t in texts:
        raw = t.encode("utf-8")
        h.update(len(raw).to_bytes(8, "little") + raw)
    h.update(labels.to(torch.int64).cpu().numpy().tobytes())
    return h.hexdigest()


# name -> (split -> file, class names as documented in TEXT_AND_TABULAR.md). A split named "*" is
# cut from the one file by :func:`stratified_split` with the recorded seed below.
TEXT_DATASETS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "sst2": (
        {s: f"sst2_{s}.csv.gz" for s in ("train", "validation", "test")},
        ("negative", "positive"),
    ),
    "sms-spam": ({"*": "sms_spam.csv.gz"}, ("ham", "spam")),
    "ag-news": ({"test": "ag_news_test.csv.gz"}, ("World", "Sports", "Business", "Sci/Tech")),
    "hate-speech": ({"*": "hate_speech_davidson2017.csv.gz"}, ("hate", "offensive", "neither")),
    "textfooler-imdb": ({"test": "textfooler_imdb_1k.csv.gz"}, ("negative", "positive")),
    "textfooler-yelp": ({"test": "textfooler_yelp_1k.csv.gz"}, ("negative", "positive")),
    "textfooler-ag": ({"test": "textfooler_ag_1k.csv.gz"}, ("World", "Sports", "Business", "Sci/Tech")),
    "textfooler-mr": ({"test": "textfooler_mr_1k.csv.gz"}, ("negative", "positive")),
}
# Sets without an official split get this one: stratified, 20% test, seed 0. The sha256 of the sorted
# test indices is recorded so a change in torch's RNG cannot silently move examples between splits.
SPLIT_SEED, SPLIT_TEST_FRACTION = 0, 0.2
RECORDED_SPLITS = {
    "sms-spam": "df4c5a8a3f8eab496cbca18acd33ed74629cad0c75badcd25c7515a8d87060a8",  # 1,114 of 5,574
    "hate-speech": "4f845771a5f96e6128a95a18bb4588b8f53be445734110fff1ab29d782d25dcf",  # 4,957 of 24,783
}


@dataclass(frozen=True)
class TextData:
    """``texts`` (N strings) with ``labels`` (N,) int64 in [0, len(class_names))."""

    texts: tuple[str, ...]
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str = "text"
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", tuple(self.texts))
        if not all(isinstance(t, str) for t in self.texts):
            raise DataError(f"{self.name}: every text must be a str")
        labels = torch.as_tensor(self.labels)
        if labels.dim() != 1 or labels.shape[0] != len(self.texts) or labels.is_floating_point():
            raise DataError(f"{self.name}: labels must be integers of shape ({len(self.texts)},)")
        object.__setattr__(self, "labels", labels.long())
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        k = len(self.class_names)
        if k < 1:
            raise DataError(f"{self.name}: at least one class name is needed")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise DataError(f"{self.name}: labels must lie in [0, {k}) for {k} class names")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: torch.Tensor | list[int] | range) -> TextData:
        """The examples at ``index`` (int positions, in the order given)."""
        idx = torch.as_tensor(list(index) if isinstance(index, range) else index, dtype=torch.long)
        return replace(self, texts=tuple(self.texts[i] for i in idx.tolist()), labels=self.labels[idx])


def _decode(raw: bytes, source: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{source}: line {line} is not valid UTF-8 (byte {raw[exc.start]:#04x}); "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def load_text_csv(path: str | Path, text_column: str = "text", label_column: str = "label") -> TextData:
    """Texts and labels from a CSV (``.csv``, ``.csv.gz``) or tab-separated (``.tsv``, ``.tsv.gz``) file.

    The first row names the columns. Label values map to class indices in sorted order (by value when
    all are numbers, as :func:`bastion.data.load_csv` does) and become the class names. Raises a one-line
    :class:`DataError` for a missing file, bytes that are not UTF-8 (naming the line), an unknown column
    (listing the columns), a row with the wrong number of fields, an empty label, or no data rows.
    """
    source = existing_path(path, "a CSV/TSV file of texts with a header row", directory=False)
    name = source.name.lower()
    gz = name.endswith(".gz")
    delimiter = "\t" if name.removesuffix(".gz").endswith(".tsv") else ","
    try:
        raw = gzip.decompress(source.read_bytes()) if gz else source.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"{source}: cannot read it as {'gzip' if gz else 'a file'} ({exc})") from None
    reader = csv.reader(io.StringIO(_decode(raw, source), newline=""), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise DataError(f"{source}: empty file; expected a header row naming the columns (e.g. text,label)")
    for role, col in (("text", text_column), ("label", label_column)):
        if col not in header:
            raise DataError(
                f"{source}: no {role} column {col!r}; columns: {', '.join(header)} (pass {role}_column=...)"
            )
    ti, li = header.index(text_column), header.index(label_column)
    texts: list[str] = []
    values: list[str] = []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"{source}: line {reader.line_num} has {len(row)} fields, the header has {len(header)}; "
                "quote texts that contain the delimiter"
            )
        label = row[li].strip()
        if not label:
            raise DataError(f"{source}: line {reader.line_num}, column {label_column!r}: empty label")
        texts.append(row[ti])
        values.append(label)
    if not texts:
        raise DataError(f"{source}: no data rows after the header")
    class_names = label_order(set(values))
    index = {v: i for i, v in enumerate(class_names)}
    stem = source.name.split(".")[0]
    return TextData(
        tuple(texts),
        torch.tensor([index[v] for v in values], dtype=torch.long),
        tuple(class_names),
        name=stem,
        source=str(source),
        meta={"path": str(source), "text_column": text_column, "label_column": label_column},
    )


def stratified_split(data: TextData, test_fraction: float, seed: int) -> tuple[TextData, TextData]:
    """``(train, test)``: each class split alone, ``round(n_c * test_fraction)`` of it to test.

    Deterministic (a seeded ``torch.Generator`` permutation per class); both parts keep the original
    order. Every class with at least two examples lands in both parts.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    g = torch.Generator().manual_seed(int(seed))
    is_test = torch.zeros(len(data), dtype=torch.bool)
    for c in range(data.num_classes):
        members = torch.nonzero(data.labels == c).flatten()
        n = members.numel()
        k = min(max(round(n * test_fraction), 1), n - 1) if n >= 2 else 0
        is_test[members[torch.randperm(n, generator=g)[:k]]] = True
    train_idx, test_idx = torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()
    split = {
        "split_seed": int(seed),
        "test_fraction": test_fraction,
        "test_sha256": split_index_sha256(test_idx),
    }
    train, test = data.subset(train_idx), data.subset(test_idx)
    return (
        replace(train, name=f"{data.name}-train", meta={**data.meta, **split, "split": "train"}),
        replace(test, name=f"{data.name}-test", meta={**data.meta, **split, "split": "test"}),
    )


def split_index_sha256(index: torch.Tensor) -> str:
    """sha256 of sorted indices written as ``"i,j,k"``: a short fingerprint of a split."""
    text = ",".join(str(i) for i in sorted(index.tolist()))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def text_data_root(root: str | Path | None = None) -> Path:
    """The folder holding the text sets: ``root``, else ``$BASTION_DATA``; either may be the data folder
    (``../shared/data``) or its ``text/`` sub-folder."""
    given = root if root is not None else os.environ.get(DATA_ENV)
    if not given:
        raise DataError(f"no data folder given; pass root=... or set {DATA_ENV} (e.g. ../shared/data)")
    base = existing_path(given, "the data folder (../shared/data) or its text/ folder", directory=True)
    return base / "text" if (base / "text").is_dir() else base


def load_text_dataset(name: str, split: str = "test", root: str | Path | None = None) -> TextData:
    """A named text set (:data:`TEXT_DATASETS`) from ``root`` (see :func:`text_data_root`).

    SST-2 has train/validation/test; the AG News and TextFooler sets only test. SMS spam and the hate-
    speech set have no official split: ``train``/``test`` are a stratified 80/20 split with seed 0
    (:func:`stratified_split`), checked against the recorded fingerprint; ``split="all"`` gives the file.
    """
    if name not in TEXT_DATASETS:
        raise DataError(f"unknown text dataset {name!r}; choose one of: {', '.join(TEXT_DATASETS)}")
    files, class_names = TEXT_DATASETS[name]
    splits = ("train", "test", "all") if "*" in files else tuple(files)
    if split not in splits:
        raise DataError(f"text dataset {name!r} has no split {split!r}; use one of: {', '.join(splits)}")
    path = text_data_root(root) / files.get(split, files.get("*", ""))
    data = load_text_csv(path)
    if data.num_classes != len(class_names):
        raise DataError(f"{path}: {data.num_classes} labels, {name} documents {len(class_names)}")
    data = replace(data, class_names=class_names, name=f"{name}-{split}", meta={**data.meta, "split": split})
    if "*" not in files or split == "all":
        return data
    train, test = stratified_split(replace(data, name=name), SPLIT_TEST_FRACTION, SPLIT_SEED)
    recorded = RECORDED_SPLITS.get(name)
    if recorded and test.meta["test_sha256"] != recorded:
        raise DataError(
            f"{name}: the seeded split differs from the recorded one (test index sha256 "
            f"{test.meta['test_sha256'][:12]}… != {recorded[:12]}…); torch's RNG changed: pin torch"
        )
    return train if split == "train" else test
