"""Input validation: a request body becomes a float32 tensor the model can take, or an :class:`InvalidInput`.

Nothing malformed reaches the model. Checked, in this order: the body's size (before it is parsed), JSON,
the structure of the body, the datatype, the shape (rows of the model's input shape, or flat rows with as
many values), the batch size, NaN/Inf, and the model's input bounds. Each refusal is an HTTP status and
one line naming the field and the fix, e.g. ``inputs[0].data: 3 values are NaN or infinite; send finite
numbers in [0, 1]``.

Two body forms:

- Open Inference Protocol (``POST /v2/models/{name}/infer``): ``{"inputs": [{"name", "shape",
  "datatype": "FP32", "data": [row-major values]}]}`` (``data`` may also be nested lists of that shape).
- ``POST /v1/predict``: ``{"model": NAME, "inputs": [[...], ...]}`` (N rows, each of the model's input
  shape or flat).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch

from bastion.errors import GatewayError

__all__ = ["InputSpec", "InvalidInput", "claimed_rows", "oip_tensor", "parse_json", "predict_tensor"]

_FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}
_INT_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


class InvalidInput(GatewayError):
    """A request the gateway refuses before the model: ``status`` (4xx), ``field`` and the message."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status, self.field = status, field


@dataclass(frozen=True)
class InputSpec:
    """What a served model accepts: rows of ``row_shape`` inside ``bounds``, at most ``max_batch`` rows."""

    row_shape: tuple[int, ...]
    bounds: tuple[float, float]
    max_batch: int = 64
    input_name: str = "input-0"

    @property
    def row_size(self) -> int:
        return math.prod(self.row_shape)


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body (already size-checked); 400 when it is not JSON."""
    if not raw.strip():
        raise InvalidInput(400, "body", "empty; send a JSON object (Content-Type: application/json)")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidInput(400, "body", "not UTF-8 text; send a UTF-8 JSON object") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            400, "body", f"not valid JSON ({exc.msg} at char {exc.pos}); fix the syntax"
        ) from None
    except RecursionError:
        raise InvalidInput(400, "body", "nested too deeply; send flat lists of numbers") from None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def claimed_rows(body: Any) -> int:
    """How many rows a body says it holds (>= 1), read before validation so the limiter can charge it."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if isinstance(inputs, list) and inputs:
        first = inputs[0]
        if isinstance(first, dict):  # OIP
            shape = first.get("shape")
            n = _positive_int(shape[0]) if isinstance(shape, list) and shape else None
            return n or 1
        return len(inputs)
    return 1


def _numbers(data: Any, field: str) -> torch.Tensor:
    """``data`` (numbers, or nested lists of numbers) as a float64 tensor; 400 on anything else."""
    if not isinstance(data, list):
        raise InvalidInput(400, field, f"must be a list of numbers, got {type(data).__name__}")
    try:
        t = torch.tensor(data, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise InvalidInput(
            400,
            field,
            "must hold numbers only, in nested lists of equal length (no strings, nulls or ragged rows)",
        ) from None
    except RecursionError:
        raise InvalidInput(400, field, "nested too deeply; send one level of nesting per dimension") from None
    return t


def _finite_in_bounds(x: torch.Tensor, field: str, spec: InputSpec) -> torch.Tensor:
    low, high = spec.bounds
    where = f"in [{low:g}, {high:g}]"
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise InvalidInput(
            400, field, f"{int(bad.sum())} value(s) are NaN or infinite; send finite numbers {where}"
        )
    outside = (x < low) | (x > high)
    if bool(outside.any()):
        lo, hi = float(x.min()), float(x.max())
        raise InvalidInput(
            400,
            field,
            f"{int(outside.sum())} value(s) are outside the model's bounds (min {lo:g}, max {hi:g}); "
            f"scale the inputs {where}",
        )
    return x.to(torch.float32).contiguous()


def _check_rows(n: int, field: str, spec: InputSpec) -> None:
    if n < 1:
        raise InvalidInput(400, field, "no rows; send at least one input row")
    if n > spec.max_batch:
        raise InvalidInput(
            413,
            field,
            f"{n} rows exceed max_batch {spec.max_batch}; split into requests of at most "
            f"{spec.max_batch} rows",
        )


def _row_shape(row: tuple[int, ...], field: str, spec: InputSpec) -> tuple[int, ...]:
    """The model's row shape when ``row`` is it or a flat row of as many values; 400 otherwise."""
    if row == spec.row_shape or row == (spec.row_size,):
        return spec.row_shape
    raise InvalidInput(
        400,
        field,
        f"rows of shape {list(row)} do not fit the model's input shape {list(spec.row_shape)}; send rows "
        f"of that shape (or flat rows of {spec.row_size} values)",
    )


def oip_tensor(body: Any, spec: InputSpec) -> torch.Tensor:
    """The float32 tensor (N, *row_shape) in an Open Inference Protocol infer body."""
    if not isinstance(body, dict):
        raise InvalidInput(
            400, "body", 'must be a JSON object {"inputs": [{"name", "shape", "datatype", "data"}]}'
        )
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(400, "inputs", 'missing or empty; send [{"name", "shape", "datatype", "data"}]')
    if len(inputs) != 1:
        raise InvalidInput(400, "inputs", f"the model takes one input tensor, got {len(inputs)}; send one")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise InvalidInput(400, "inputs[0]", 'must be an object {"name", "shape", "datatype", "data"}')
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise InvalidInput(400, f"inputs[0].{key}", "missing; the Open Inference Protocol requires it")
    name = tensor["name"]
    if name != spec.input_name:
        raise InvalidInput(
            400, "inputs[0].name", f"{str(name)[:60]!r} is not the model's input; use {spec.input_name!r}"
        )
    datatype = tensor["datatype"]
    if datatype not in _FLOAT_TYPES:
        fix = "convert the values to floats and send FP32" if datatype in _INT_TYPES else "send FP32"
        raise InvalidInput(400, "inputs[0].datatype", f"{str(datatype)[:20]!r} is not supported; {fix}")
    shape = tensor["shape"]
    if not isinstance(shape, list) or len(shape) < 2 or not all(_positive_int(d) is not None for d in shape):
        if isinstance(shape, list) and shape and shape[0] == 0:
            raise InvalidInput(400, "inputs[0].shape", "0 rows; send at least one input row")
        raise InvalidInput(
            400,
            "inputs[0].shape",
            f"must be [N, {', '.join(map(str, spec.row_shape))}] with sizes >= 1, got {str(shape)[:60]}",
        )
    n = shape[0]
    _check_rows(n, "inputs[0].shape[0]", spec)
    row = _row_shape(tuple(shape[1:]), "inputs[0].shape", spec)
    data = tensor["data"]
    if isinstance(data, list) and len(data) > n * spec.row_size:  # cheap refusal before converting
        raise InvalidInput(
            400, "inputs[0].data", f"{len(data)} values do not match shape {shape} ({n * spec.row_size})"
        )
    values = _numbers(data, "inputs[0].data")
    if values.numel() != n * spec.row_size:
        raise InvalidInput(
            400,
            "inputs[0].data",
            f"{values.numel()} values do not match shape {shape} ({n * spec.row_size} values); "
            "send shape[0] x row size values, row-major",
        )
    return _finite_in_bounds(values.reshape(n, *row), "inputs[0].data", spec)


def predict_tensor(body: Any, spec: InputSpec) -> torch.Tensor:
    """The float32 tensor (N, *row_shape) in a ``/v1/predict`` body (``inputs``: a list of rows)."""
    if not isinstance(body, dict):
        raise InvalidInput(400, "body", 'must be a JSON object {"model": NAME, "inputs": [[...], ...]}')
    rows = body.get("inputs")
    if not isinstance(rows, list):
        raise InvalidInput(400, "inputs", "missing or not a list; send a list of input rows")
    _check_rows(len(rows), "inputs", spec)
    values = _numbers(rows, "inputs")
    row = _row_shape(tuple(values.shape[1:]), "inputs", spec)
    return _finite_in_bounds(values.reshape(len(rows), *row), "inputs", spec)
