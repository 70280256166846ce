"""The models a gateway serves: each one's input spec (row shape, bounds, batch cap) and class count,
and the output policies keys name (parsed once, cached)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import torch

from bastion.errors import GatewayError
from bastion.serve.openapi import INPUT_NAME
from bastion.serve.validation import InputSpec

if TYPE_CHECKING:
    from bastion.defenses.output_policy import OutputPolicy
    from bastion.model import Classifier

__all__ = ["Served", "input_shape_of", "policy_for", "serve_model"]


@dataclass(frozen=True)
class Served:
    name: str
    model: Classifier
    spec: InputSpec
    num_classes: int


def input_shape_of(
    name: str, model: Classifier, configured: Mapping[str, tuple[int, ...]]
) -> tuple[int, ...]:
    """The per-row input shape of a served model: from the config, the model (``input_shape``), an
    ``oip:`` model's metadata, or the zoo card; :class:`GatewayError` when none tells it."""
    if name in configured:
        return tuple(configured[name])
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple | list) and shape:
        return tuple(int(d) for d in shape)
    metadata = getattr(model, "metadata", None)  # a RemoteClassifier that read its upstream's metadata
    if isinstance(metadata, dict):
        for tensor in metadata.get("inputs") or []:
            dims = tensor.get("shape") or []
            if len(dims) > 1 and all(isinstance(d, int) and d > 0 for d in dims[1:]):
                return tuple(dims[1:])
    model_name = str(getattr(model, "name", ""))
    if model_name.startswith("zoo:"):
        from bastion.zoo.architectures import spec

        return tuple(spec(model_name[4:]).input_shape)
    raise GatewayError(
        f"model {name!r}: its input shape is unknown; set it in the config "
        f"([input_shapes] {name} = [C, H, W]) or with --input-shape"
    )


def serve_model(
    name: str, model: Classifier, configured: Mapping[str, tuple[int, ...]], max_batch: int
) -> Served:
    """``model`` ready to serve as ``name``; a model that does not tell its class count answers one
    forward pass at start-up (which also fails early on a broken model)."""
    row_shape = input_shape_of(name, model, configured)
    low, high = (float(b) for b in model.bounds)
    spec = InputSpec(row_shape, (low, high), max_batch, INPUT_NAME)
    k = model.num_classes
    if k is None:
        with torch.no_grad():
            k = int(model(torch.full((1, *row_shape), low, dtype=torch.float32)).shape[1])
    return Served(name, model, spec, int(k))


@lru_cache(maxsize=256)
def policy_for(spec: str) -> OutputPolicy:
    """The parsed output policy a key's scope names (ValueError when it is not one)."""
    from bastion.defenses.output_policy import OutputPolicy

    return OutputPolicy.parse(spec)
