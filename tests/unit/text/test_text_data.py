"""Text loaders: CSV/TSV/gz parsing, one-line errors, seeded stratified splits, the named shared sets."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from bastion.errors import DataError
from bastion.text.data import (
    RECORDED_SPLITS,
    TextData,
    load_text_csv,
    load_text_dataset,
    split_index_sha256,
    stratified_split,
    text_data_root,
)

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
needs_text = pytest.mark.skipif(
    not (SHARED / "text").is_dir(), reason="text sets not present in ../shared/data"
)


def test_csv_tsv_and_gz_read_the_same(tmp_path: Path) -> None:
    body = 'text,label\n"hello, world",10\nbye,2\n"multi\nline",2\n'
    (tmp_path / "a.csv").write_text(body, encoding="utf-8")
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(body.encode()))
    (tmp_path / "a.tsv").write_text(
        "label\ttext\n10\thello, world\n2\tbye\n2\tmulti\\nline\n", encoding="utf-8"
    )
    plain, gz = load_text_csv(tmp_path / "a.csv"), load_text_csv(tmp_path / "a.csv.gz")
    assert plain.texts == gz.texts == ("hello, world", "bye", "multi\nline")
    assert plain.class_names == ("2", "10")  # numeric order, not text order
    assert plain.labels.tolist() == [1, 0, 0]
    tsv = load_text_csv(tmp_path / "a.tsv")
    assert tsv.texts[:2] == ("hello, world", "bye") and tsv.labels.tolist() == [1, 0, 0]
    assert plain.name == "a" and plain.source == str(tmp_path / "a.csv")


def test_text_labels_sort_as_text(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("sms,kind\nhi,spam\nyo,ham\n", encoding="utf-8")
    data = load_text_csv(tmp_path / "b.csv", text_column="sms", label_column="kind")
    assert data.class_names == ("ham", "spam") and data.labels.tolist() == [1, 0]


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(b"text,label\ngood,0\ncaf\xe9,1\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 3 is not valid UTF-8.*iconv") as err:
        load_text_csv(p)
    assert "\n" not in str(err.value)
    p.with_suffix(".csv.gz").write_bytes(gzip.compress(b"text,label\ncaf\xe9,1\n"))
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        load_text_csv(tmp_path / "bad.csv.gz")


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        (
            "text,label\nx,0\n",
            {"text_column": "sentence"},
            r"no text column 'sentence'; columns: text, label",
        ),
        ("text,label\nx,0\n", {"label_column": "y"}, r"no label column 'y'; columns: text, label"),
        ("", {}, "empty file"),
        ("text,label\n", {}, "no data rows"),
        ("text,label\nx,0\ny,1,extra\n", {}, "line 3 has 3 fields"),
        ("text,label\nx,\n", {}, "line 2, column 'label': empty label"),
    ],
)
def test_loader_errors_are_one_line(tmp_path: Path, body: str, kwargs: dict[str, str], message: str) -> None:
    p = tmp_path / "t.csv"
    p.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_text_csv(p, **kwargs)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_gzip(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_text_csv(tmp_path / "nope.csv")
    (tmp_path / "x.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read it as gzip"):
        load_text_csv(tmp_path / "x.csv.gz")


def _toy(n0: int = 50, n1: int = 10, n2: int = 1) -> TextData:
    labels = [0] * n0 + [1] * n1 + [2] * n2
    return TextData(tuple(f"t{i}" for i in range(len(labels))), torch.tensor(labels), ("a", "b", "c"))


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    data = _toy()
    train, test = stratified_split(data, 0.2, seed=3)
    again_train, again_test = stratified_split(data, 0.2, seed=3)
    assert test.texts == again_test.texts and train.texts == again_train.texts
    assert test.labels.bincount(minlength=3).tolist() == [10, 2, 0]  # a singleton class stays in train
    assert train.labels.bincount(minlength=3).tolist() == [40, 8, 1]
    assert set(train.texts).isdisjoint(test.texts) and len(train) + len(test) == len(data)
    assert list(test.texts) == sorted(test.texts, key=lambda t: int(t[1:]))  # original order kept
    assert stratified_split(data, 0.2, seed=4)[1].texts != test.texts
    assert test.meta["test_sha256"] == split_index_sha256(torch.tensor([int(t[1:]) for t in test.texts]))
    with pytest.raises(DataError, match="test_fraction"):
        stratified_split(data, 1.0, seed=0)


def test_subset_and_validation() -> None:
    data = _toy(3, 2, 1)
    sub = data.subset([5, 0])
    assert sub.texts == ("t5", "t0") and sub.labels.tolist() == [2, 0] and sub.class_names == data.class_names
    with pytest.raises(DataError, match="labels must lie"):
        TextData(("a",), torch.tensor([2]), ("x", "y"))
    with pytest.raises(DataError, match="integers of shape"):
        TextData(("a", "b"), torch.tensor([0]), ("x",))


def test_root_from_env_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_DATA", raising=False)
    with pytest.raises(DataError, match="BASTION_DATA"):
        text_data_root()
    (tmp_path / "text").mkdir()
    monkeypatch.setenv("BASTION_DATA", str(tmp_path))
    assert text_data_root() == tmp_path / "text"
    assert text_data_root(tmp_path / "text") == tmp_path / "text"
    with pytest.raises(DataError, match="unknown text dataset 'imdb'; choose one of: sst2, sms-spam"):
        load_text_dataset("imdb")
    with pytest.raises(DataError, match="has no split 'train'; use one of: test"):
        load_text_dataset("ag-news", "train")


@needs_text
def test_named_sets_have_documented_sizes() -> None:
    val = load_text_dataset("sst2", "validation", SHARED)
    assert len(val) == 872 and val.labels.bincount().tolist() == [428, 444]
    assert val.class_names == ("negative", "positive")
    assert val.texts[0] == "it 's a charming and often affecting journey ." and int(val.labels[0]) == 1
    ag = load_text_dataset("ag-news", "test", SHARED)
    assert len(ag) == 7600 and ag.labels.bincount().tolist() == [1900] * 4
    assert len(load_text_dataset("textfooler-mr", "test", SHARED)) == 1000


@needs_text
def test_sms_spam_split_is_the_recorded_one() -> None:
    train = load_text_dataset("sms-spam", "train", SHARED)
    test = load_text_dataset("sms-spam", "test", SHARED)
    assert (len(train), len(test)) == (4460, 1114)
    assert test.labels.bincount().tolist() == [965, 149] and train.labels.bincount().tolist() == [3862, 598]
    assert test.meta["test_sha256"] == RECORDED_SPLITS["sms-spam"] and test.meta["split_seed"] == 0
    assert len(load_text_dataset("sms-spam", "all", SHARED)) == 5574
