"""load_tabular: user-space matrix, records round trip, and one-line errors naming line and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from bastion.errors import DataError
from bastion.tabular import Feature, TabularSchema, load_tabular

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tabular"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="tabular data not present in ../shared/data")

SCHEMA = TabularSchema(
    features=(
        Feature("age", "integer", low=18, high=90),
        Feature("income", "numeric", low=0, high=1e5),
        Feature("rate", "ordinal", categories=("1", "2", "3")),
        Feature("housing", "categorical", categories=("own", "rent", "?")),
    ),
)
CSV = "age,income,rate,housing,label\n30,1200.5,2,rent,1\n45,300,1,?,0\n"


def write(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> Path:
    p = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return p


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz"])
def test_loads_user_space_and_records_round_trip(tmp_path: Path, name: str) -> None:
    data = load_tabular(write(tmp_path, CSV, name), SCHEMA)
    assert data.x.dtype == torch.float64
    assert data.x.tolist() == [[30, 1200.5, 1, 1], [45, 300, 0, 2]]
    assert data.y.tolist() == [1, 0] and data.classes == ("0", "1")
    assert data.records() == [
        {"age": 30, "income": 1200.5, "rate": "2", "housing": "rent"},
        {"age": 45, "income": 300.0, "rate": "1", "housing": "?"},
    ]


def test_columns_may_come_in_any_order_and_extra_ones_be_ignored(tmp_path: Path) -> None:
    text = "id,housing,label,rate,income,age\n7,own,0,3,10,20\n"
    data = load_tabular(write(tmp_path, text), SCHEMA, ignore=["id"])
    assert data.x.tolist() == [[20, 10, 2, 0]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CSV.replace("rent", "castle"), r"line 2, column 'housing': unknown code 'castle'"),
        (CSV.replace("1200.5", "abc"), r"line 2, column 'income': 'abc' is not a number"),
        (CSV.replace("45,", "45.5,"), r"line 3, column 'age': '45.5' is not an integer"),
        (CSV.replace("300", "nan"), r"line 3, column 'income': NaN"),
        (CSV.replace("30,", ","), r"line 2, column 'age': '' is not a number"),
        (CSV + "1,2\n", r"line 4 has 2 fields"),
        ("age,income,rate,label\n1,2,1,0\n", r"missing column\(s\) housing"),
        ("age,income,rate,housing,zip,label\n", r"unknown column\(s\) zip"),
        ("age,income,rate,housing,label\n", "no data rows"),
        ("", "empty file"),
    ],
)
def test_bad_files_raise_one_line_data_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        load_tabular(write(tmp_path, text), SCHEMA)
    assert "\n" not in str(info.value)


def test_non_utf8_and_broken_gzip(tmp_path: Path) -> None:
    raw = CSV.encode().replace(b"rent", b"r\xe9nt")
    with pytest.raises(DataError, match=r"line 2 is not UTF-8"):
        load_tabular(write(tmp_path, raw), SCHEMA)
    broken = tmp_path / "b.csv.gz"
    broken.write_bytes(gzip.compress(CSV.encode())[:20])
    with pytest.raises(DataError, match="broken gzip"):
        load_tabular(broken, SCHEMA)


def test_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rows = "".join(f"{20 + i},{i},1,own,{i % 2}\n" for i in range(50))
    data = load_tabular(write(tmp_path, "age,income,rate,housing,label\n" + rows), SCHEMA)
    train, test = data.split(0.2, seed=3)
    again, _ = data.split(0.2, seed=3)
    assert len(test) == 10 and len(train) == 40
    assert torch.equal(train.x, again.x)
    assert not set(train.x[:, 1].tolist()) & set(test.x[:, 1].tolist())


@needs_shared
def test_shared_files_load_with_the_shared_schema() -> None:
    path = SHARED / "tabular_schema.json"
    german = load_tabular(
        SHARED / "german_credit.csv.gz", TabularSchema.from_json(path, dataset="german_credit")
    )
    assert german.x.shape == (1000, 20) and german.y.bincount().tolist() == [700, 300]
    assert german.records()[0]["checking_status"] == "A11" and german.records()[0]["credit_amount"] == 1169
    adult_schema = TabularSchema.from_json(path, dataset="adult_test.csv.gz")
    adult = load_tabular(SHARED / "adult_test.csv.gz", adult_schema)
    missing = adult_schema.feature("workclass").categories.index("?")
    assert len(adult) == 16281 and int((adult.x[:, 1] == missing).sum()) > 0
