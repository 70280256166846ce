"""CSV loading: features, label mapping, bounds, and errors that name the row and column."""

from __future__ import annotations

import pytest
import torch

from bastion.data import load_csv
from bastion.errors import DataError


def write(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_features_labels_and_bounds(tmp_path):
    path = write(tmp_path, "a,species,b\n0.1,setosa,2\n-1.5,virginica,0.3\n4,setosa,1\n")
    ds = load_csv(path, "species")
    assert ds.x.dtype == torch.float32 and ds.x.shape == (3, 2)
    torch.testing.assert_close(ds.x, torch.tensor([[0.1, 2.0], [-1.5, 0.3], [4.0, 1.0]]))
    assert ds.class_names == ("setosa", "virginica") and ds.y.tolist() == [0, 1, 0]
    assert ds.bounds == (-1.5, 4.0)
    assert ds.meta["features"] == ["a", "b"]


def test_bounds_contain_float32_values(tmp_path):
    # 0.3 rounds up in float32; the bounds must still contain every stored value.
    ds = load_csv(write(tmp_path, "x,y\n0.1,a\n0.3,b\n"), "y")
    assert float(ds.x.min()) >= ds.bounds[0] and float(ds.x.max()) <= ds.bounds[1]


def test_numeric_labels_sort_by_value(tmp_path):
    ds = load_csv(write(tmp_path, "f,label\n0,10\n1,2\n2,1\n3,2\n"), "label")
    assert ds.class_names == ("1", "2", "10")
    assert ds.y.tolist() == [2, 1, 0, 1]


def test_tsv(tmp_path):
    ds = load_csv(write(tmp_path, "f\tg\tlabel\n1\t2\tx\n3\t4\ty\n", "t.tsv"), "label")
    assert ds.x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_missing_label_column_lists_columns(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="no label column 'target'; columns: a, b, c"):
        load_csv(path, "target")
    with pytest.raises(DataError, match=r"name the label column.*columns: a, b, c"):
        load_csv(path, None)


@pytest.mark.parametrize(
    "row,message",
    [
        ("1,oops,a", r"line 3, column 'g': 'oops' is not a number"),
        ("1,,a", r"line 3, column 'g': '' is not a number"),
        ("nan,1,a", r"line 3, column 'f': NaN"),
        ("1,2", r"line 3 has 2 fields, the header has 3"),
    ],
)
def test_bad_rows_named(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        load_csv(write(tmp_path, f"f,g,label\n1,2,b\n{row}\n"), "label")


def test_empty_and_missing(tmp_path):
    with pytest.raises(DataError, match="no data rows"):
        load_csv(write(tmp_path, "f,label\n"), "label")
    with pytest.raises(DataError, match="empty file"):
        load_csv(write(tmp_path, ""), "label")
    with pytest.raises(DataError, match="does not exist"):
        load_csv(tmp_path / "none.csv", "label")
