"""TabularSchema: both JSON formats, round trip, column validation, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.errors import DataError
from bastion.tabular import Feature, Relation, TabularSchema

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tabular"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="tabular data not present in ../shared/data")


def small_schema() -> TabularSchema:
    return TabularSchema(
        features=(
            Feature("age", "integer", low=18, high=90, immutable=True),
            Feature("income", "numeric", low=0, high=1e5, max_change=5000.0, cost=2.0),
            Feature("debt", "numeric", low=0, high=1e5),
            Feature("total", "numeric", low=0, high=2e5),
            Feature("rate", "ordinal", categories=("1", "2", "3"), direction="decrease"),
            Feature("housing", "categorical", categories=("own", "rent", "free")),
        ),
        classes=("0", "1"),
        class_names=("good", "bad"),
        relations=(Relation({"income": 1, "debt": 1, "total": -1}, "==", 0.0, adjust="total"),),
        name="toy",
    )


def test_own_format_round_trips(tmp_path: Path) -> None:
    schema = small_schema()
    path = schema.to_json(tmp_path / "s.json")
    assert json.loads(path.read_text())["format"] == "bastion.tabular_schema"
    back = TabularSchema.from_json(path)
    assert back == schema
    assert back.relations[0].coefficients == {"income": 1.0, "debt": 1.0, "total": -1.0}
    assert back.feature("rate").high == 2.0  # coded features range over their indices


def test_validate_columns_names_unknown_and_missing() -> None:
    schema = small_schema()
    schema.validate_columns([*schema.names, "label"])
    with pytest.raises(DataError, match=r"unknown column\(s\) id.*missing column\(s\) housing"):
        schema.validate_columns(["id", *schema.names[:-1], "label"])
    schema.validate_columns(["id", *schema.names, "label"], ignore=["id"])
    with pytest.raises(DataError, match="age twice"):
        schema.validate_columns(["age", *schema.names, "label"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "kind": "float"}, "kind 'float' unknown"),
        ({"name": "x", "kind": "categorical"}, "needs its list of categories"),
        ({"name": "x", "kind": "numeric", "categories": ("a",)}, "cannot have categories"),
        ({"name": "x", "kind": "numeric", "low": 2, "high": 1}, "low 2 > high 1"),
        ({"name": "x", "kind": "numeric", "max_change": -1.0}, "max_change must be >= 0"),
        (
            {"name": "x", "kind": "categorical", "categories": ("a", "b"), "direction": "increase"},
            "no direction",
        ),
    ],
)
def test_feature_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Feature(**kwargs)


def test_schema_rejects_bad_relations_and_duplicates() -> None:
    f = Feature("a", "numeric")
    with pytest.raises(DataError, match="twice"):
        TabularSchema((f, f))
    with pytest.raises(DataError, match="unknown feature 'b'"):
        TabularSchema((f,), relations=(Relation({"b": 1.0}),))
    with pytest.raises(DataError, match="categorical"):
        TabularSchema(
            (Feature("c", "categorical", categories=("x", "y")),), relations=(Relation({"c": 1.0}),)
        )
    with pytest.raises(DataError, match="adjusts 'z'"):
        Relation({"a": 1.0}, adjust="z")


def test_without_and_updated() -> None:
    schema = small_schema()
    assert "total" not in schema.without("total").names
    assert schema.without("total").relations == ()
    assert not schema.updated("age", immutable=False).feature("age").immutable
    with pytest.raises(DataError, match="unknown feature 'nope'"):
        schema.without("nope")


@needs_shared
def test_shared_schema_file_reads_every_dataset() -> None:
    path = SHARED / "tabular_schema.json"
    german = TabularSchema.from_json(path, dataset="german_credit.csv.gz")
    assert len(german) == 20 and german.classes == ("0", "1")
    assert german.feature("age").immutable and german.feature("foreign_worker").immutable
    assert german.feature("installment_rate").categories == ("1", "2", "3", "4")
    assert "A47" in german.feature("purpose").categories
    taiwan = TabularSchema.from_json(path, dataset="default_credit_taiwan")
    assert taiwan.feature("PAY_0").categories[:3] == ("-2", "-1", "0")  # numeric order
    adult = TabularSchema.from_json(path, dataset=SHARED / "adult_test.csv.gz")
    assert "?" in adult.feature("workclass").categories  # missing is its own category
    with pytest.raises(DataError, match="several datasets"):
        TabularSchema.from_json(path)
    with pytest.raises(DataError, match="no entry for dataset 'mnist'"):
        TabularSchema.from_json(path, dataset="mnist")


def test_from_json_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        TabularSchema.from_json(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="not a UTF-8 JSON"):
        TabularSchema.from_json(bad)
