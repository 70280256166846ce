"""The package surface: exports, records <-> tensor round trip, JSON-ready summaries."""

from __future__ import annotations

import json

import pytest
import torch

import bastion.tabular as tabular
from bastion.errors import DataError
from bastion.tabular import Feature, TabularSchema, TabularThreatModel, from_records, records

SCHEMA = TabularSchema(
    features=(
        Feature("age", "integer", low=18, high=90, immutable=True),
        Feature("income", "numeric", low=0, high=1e5),
        Feature("housing", "categorical", categories=("own", "rent")),
    ),
    name="toy",
)


def test_all_is_sorted_and_resolves() -> None:
    assert tabular.__all__ == sorted(tabular.__all__)
    for name in tabular.__all__:
        assert getattr(tabular, name) is not None
    assert "train_mlp" in (tabular.__doc__ or "")


def test_records_round_trip_and_errors() -> None:
    x = torch.tensor([[30, 1234.25, 1], [70, 0.1, 0]], dtype=torch.float64)
    rows = records(x, SCHEMA)
    assert rows[0] == {"age": 30, "income": 1234.25, "housing": "rent"}
    assert torch.equal(from_records(rows, SCHEMA), x)
    assert json.loads(json.dumps(rows)) == rows
    with pytest.raises(DataError, match="record 0, column 'housing': unknown code 'boat'"):
        from_records([{**rows[0], "housing": "boat"}], SCHEMA)
    with pytest.raises(DataError, match=r"missing column\(s\) income"):
        from_records([{"age": 1, "housing": "own"}], SCHEMA)


def test_threat_to_dict_is_json_ready() -> None:
    doc = TabularThreatModel(SCHEMA, max_change={"income": 500}, budget=0.2).to_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["mutable"] == ["income", "housing"] and doc["budget"] == 0.2
