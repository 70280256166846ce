"""Input validation: every malformed class of input is refused with a 4xx naming the field."""

from __future__ import annotations

import math

import pytest
import torch

from bastion.serve.validation import (
    InputSpec,
    InvalidInput,
    claimed_rows,
    oip_tensor,
    parse_json,
    predict_tensor,
)

SPEC = InputSpec(row_shape=(1, 2, 2), bounds=(0.0, 1.0), max_batch=4)


def oip(data=None, shape=None, **over):
    tensor = {"name": "input-0", "shape": shape or [2, 1, 2, 2], "datatype": "FP32"}
    tensor["data"] = data if data is not None else [0.25] * 8
    tensor.update(over)
    return {"inputs": [tensor]}


def test_oip_body_becomes_float32_rows_of_the_model_shape() -> None:
    x = oip_tensor(oip(data=[i / 8 for i in range(8)]), SPEC)
    assert x.dtype == torch.float32 and x.shape == (2, 1, 2, 2)
    assert torch.equal(x.flatten(), torch.tensor([i / 8 for i in range(8)], dtype=torch.float32))


def test_oip_accepts_flat_rows_nested_data_and_other_float_types() -> None:
    assert oip_tensor(oip(shape=[2, 4]), SPEC).shape == (2, 1, 2, 2)
    nested = [[[[0.0, 0.5], [1.0, 0.5]]], [[[0.0, 0.0], [0.0, 0.0]]]]
    assert oip_tensor(oip(data=nested), SPEC)[0, 0, 1, 0] == 1.0
    assert oip_tensor(oip(datatype="FP64"), SPEC).dtype == torch.float32


def test_predict_body_becomes_rows() -> None:
    x = predict_tensor({"model": "m", "inputs": [[0.0, 0.1, 0.2, 1.0]]}, SPEC)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert predict_tensor({"inputs": [[[[0, 1], [1, 0]]]] * 3}, SPEC).shape == (3, 1, 2, 2)


@pytest.mark.parametrize(
    ("body", "status", "field", "hint"),
    [
        ([], 400, "body", "object"),
        ({}, 400, "inputs", "missing"),
        ({"inputs": []}, 400, "inputs", "missing or empty"),
        ({"inputs": [1]}, 400, "inputs[0]", "object"),
        ({"inputs": [oip()["inputs"][0]] * 2}, 400, "inputs", "one input"),
        (
            {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32"}]},
            400,
            "inputs[0].data",
            "missing",
        ),
        (oip(name="pixels"), 400, "inputs[0].name", "input-0"),
        (oip(datatype="INT8"), 400, "inputs[0].datatype", "FP32"),
        (oip(datatype="BYTES"), 400, "inputs[0].datatype", "FP32"),
        (oip(shape=[2, 1, 3, 2]), 400, "inputs[0].shape", "[1, 2, 2]"),
        (oip(shape=[2]), 400, "inputs[0].shape", "[N, 1, 2, 2]"),
        (oip(shape=[0, 1, 2, 2], data=[]), 400, "inputs[0].shape", "0 rows"),
        (oip(shape=[-1, 1, 2, 2]), 400, "inputs[0].shape", ">= 1"),
        (oip(shape="2x4"), 400, "inputs[0].shape", "[N, 1, 2, 2]"),
        (oip(shape=[5, 1, 2, 2], data=[0.0] * 20), 413, "inputs[0].shape[0]", "max_batch 4"),
        (oip(data=[0.0] * 7), 400, "inputs[0].data", "7 values"),
        (oip(data=[0.0] * 9), 400, "inputs[0].data", "9 values"),
        (oip(data=["a"] * 8), 400, "inputs[0].data", "numbers only"),
        (oip(data=[None] * 8), 400, "inputs[0].data", "numbers only"),
        (oip(data="0,0,0"), 400, "inputs[0].data", "list of numbers"),
        (oip(data=[math.nan] + [0.0] * 7), 400, "inputs[0].data", "NaN or infinite"),
        (oip(data=[math.inf] + [0.0] * 7), 400, "inputs[0].data", "NaN or infinite"),
        (oip(data=[1.5] + [0.0] * 7), 400, "inputs[0].data", "outside the model's bounds"),
        (oip(data=[-0.1] + [0.0] * 7), 400, "inputs[0].data", "in [0, 1]"),
        (oip(data=[1e300] + [0.0] * 7), 400, "inputs[0].data", "bounds"),
    ],
)
def test_oip_malformed_inputs_name_the_field(body, status, field, hint) -> None:
    with pytest.raises(InvalidInput) as caught:
        oip_tensor(body, SPEC)
    assert caught.value.status == status and caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ") and hint in str(caught.value)


@pytest.mark.parametrize(
    ("body", "status", "hint"),
    [
        ("rows", 400, "object"),
        ({"model": "m"}, 400, "missing"),
        ({"inputs": {"a": 1}}, 400, "missing or not a list"),
        ({"inputs": []}, 400, "no rows"),
        ({"inputs": [[0.0] * 4] * 5}, 413, "max_batch 4"),
        ({"inputs": [[0.0] * 3]}, 400, "do not fit the model's input shape [1, 2, 2]"),
        ({"inputs": [[0.0] * 4, [0.0] * 3]}, 400, "equal length"),
        ({"inputs": [0.0, 0.5]}, 400, "do not fit"),
        ({"inputs": [[0.0, "x", 0.0, 0.0]]}, 400, "numbers only"),
        ({"inputs": [[0.0, math.nan, 0.0, 0.0]]}, 400, "NaN"),
        ({"inputs": [[0.0, 2.0, 0.0, 0.0]]}, 400, "bounds"),
    ],
)
def test_predict_malformed_inputs_name_the_field(body, status, hint) -> None:
    with pytest.raises(InvalidInput) as caught:
        predict_tensor(body, SPEC)
    assert caught.value.status == status and hint in str(caught.value)
    assert str(caught.value).startswith(caught.value.field + ": ")


def test_bounds_are_the_models() -> None:
    spec = InputSpec((2,), (-1.0, 1.0), 8)
    assert predict_tensor({"inputs": [[-1.0, 1.0]]}, spec).tolist() == [[-1.0, 1.0]]
    with pytest.raises(InvalidInput, match=r"in \[-1, 1\]"):
        predict_tensor({"inputs": [[-1.5, 0.0]]}, spec)


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        (b"", "empty"),
        (b"  ", "empty"),
        (b"{", "not valid JSON"),
        (b'{"a": "\xc3\x28"}', "UTF-8"),
        (b"[" * 100_000, "deeply"),
    ],
)
def test_parse_json_refuses_what_is_not_json(raw, hint) -> None:
    with pytest.raises(InvalidInput, match=hint) as caught:
        parse_json(raw)
    assert caught.value.status == 400 and caught.value.field == "body"


def test_parse_json_reads_nan_literals_so_validation_can_refuse_them() -> None:
    body = parse_json(b'{"inputs": [[NaN, 0, 0, 0]]}')
    with pytest.raises(InvalidInput, match="NaN"):
        predict_tensor(body, SPEC)


@pytest.mark.parametrize(
    ("body", "rows"),
    [(oip(), 2), (oip(shape=[7, 4]), 7), (oip(shape=["x"]), 1), ({"inputs": [[0]] * 3}, 3), ([], 1), ({}, 1)],
)
def test_claimed_rows(body, rows) -> None:
    assert claimed_rows(body) == rows
