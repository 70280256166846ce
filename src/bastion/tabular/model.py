"""The tabular classifier contract and its adapters.

A :class:`TabularClassifier` has ``schema``, ``num_classes`` and ``__call__(x) -> logits``, where
``x`` (N, D) float64 is in the **user's feature space** (see :mod:`bastion.tabular.data`) and logits
are (N, K). Encoding and scaling live inside the wrapper, so attacks produce records a person could
submit. ``differentiable`` says whether gradient attacks may run on it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from bastion.errors import DataError, ModelContractError
from bastion.tabular.encoding import Encoder
from bastion.tabular.schema import TabularSchema

__all__ = ["SklearnTabularClassifier", "TabularClassifier", "TorchTabularClassifier", "check_records"]


@runtime_checkable
class TabularClassifier(Protocol):
    """Maps user-space records (N, D) to logits (N, K)."""

    schema: TabularSchema
    differentiable: bool

    @property
    def num_classes(self) -> int: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def check_records(x: torch.Tensor, schema: TabularSchema) -> None:
    """DataError unless ``x`` is a finite floating (N, D) batch for ``schema``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise DataError("x must be a floating-point torch.Tensor of records (use TabularData.x)")
    if x.dim() != 2 or x.shape[1] != len(schema) or x.shape[0] == 0:
        raise DataError(
            f"x must be a non-empty batch (N, {len(schema)}) for this schema, got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise DataError("x contains NaN or infinite values; clean the data first")


class TorchTabularClassifier:
    """A PyTorch module over the encoder's model space, wrapped to take user-space records.

    ``logits_encoded(z)`` (N, M) -> (N, K) is the differentiable path gradient attacks use on the
    relaxed encoding. The module is called as it is (its ``training`` flag is left alone).
    """

    differentiable = True

    def __init__(
        self,
        module: nn.Module,
        encoder: Encoder,
        schema: TabularSchema | None = None,
        *,
        num_classes: int | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise ModelContractError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(encoder, Encoder):
            raise ModelContractError(
                f"encoder must be a bastion.tabular.Encoder, got {type(encoder).__name__}"
            )
        if schema is not None and schema.names != encoder.schema.names:
            raise ModelContractError("the encoder was fitted for another schema (feature names differ)")
        self.module, self.encoder, self.schema = module, encoder, schema or encoder.schema
        k = num_classes or len(self.schema.classes)
        if not k:
            with torch.no_grad():
                k = int(self.logits_encoded(torch.zeros(2, encoder.width)).shape[1])
        self._num_classes = int(k)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def logits_encoded(self, z: torch.Tensor) -> torch.Tensor:
        """Model-space (relaxed) inputs (N, M) -> logits (N, K) on z's device; keeps the autograd graph."""
        logits = self.module(z.to(self._device(), torch.float32)).to(z.device)
        if logits.dim() != 2:
            raise ModelContractError(f"the module must return logits (N, K), got shape {tuple(logits.shape)}")
        return logits

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_records(x, self.schema)
        return self.logits_encoded(self.encoder.encode(x))


class SklearnTabularClassifier:
    """Any estimator with ``predict_proba`` (scikit-learn, XGBoost/LightGBM sklearn API), black-box.

    The estimator sees ``encoder.encode(x)`` when an encoder is given, else the user-space matrix
    (category indices: fine for trees). Logits are ``log(clip(proba, 1e-12))``; there are no gradients.
    ``queries`` counts every record sent to ``predict_proba``.
    """

    differentiable = False

    def __init__(self, estimator: Any, schema: TabularSchema, encoder: Encoder | None = None) -> None:
        if not callable(getattr(estimator, "predict_proba", None)):
            raise ModelContractError(
                f"{type(estimator).__name__} has no predict_proba; wrap a probabilistic classifier "
                "(e.g. HistGradientBoostingClassifier, MLPClassifier, XGBClassifier)"
            )
        if encoder is not None and encoder.schema.names != schema.names:
            raise ModelContractError("the encoder was fitted for another schema (feature names differ)")
        classes = getattr(estimator, "classes_", None)
        if classes is not None and [str(c) for c in classes] != [str(i) for i in range(len(classes))]:
            raise ModelContractError(
                f"the estimator's classes_ are {list(classes)}; "
                "train it on class indices 0..K-1 (TabularData.y)"
            )
        self.estimator, self.schema, self.encoder = estimator, schema, encoder
        self._num_classes = len(classes) if classes is not None else len(schema.classes)
        if not self._num_classes:
            raise ModelContractError("cannot tell the number of classes: fit the estimator first")
        self.queries = 0

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_records(x, self.schema)
        self.queries += int(x.shape[0])
        feats = self.encoder.encode(x) if self.encoder is not None else x
        proba = np.asarray(self.estimator.predict_proba(feats.detach().cpu().numpy()), dtype=np.float64)
        if proba.shape != (x.shape[0], self._num_classes):
            raise ModelContractError(
                f"predict_proba returned shape {proba.shape}, expected {(x.shape[0], self._num_classes)}"
            )
        return torch.from_numpy(np.log(np.clip(proba, 1e-12, 1.0))).to(device=x.device, dtype=torch.float32)
