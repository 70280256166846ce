"""Tabular models named the way the command line names them: ``FILE.py:factory`` or
``package.module:factory`` returning a bastion tabular classifier or a fitted estimator with
``predict_proba`` (wrapped over the schema). Shared by the command line and the shard runner's workers."""

from __future__ import annotations

from typing import Any

from bastion.errors import ModelContractError

__all__ = ["load_tabular_model_spec"]


def load_tabular_model_spec(spec: str, schema: Any) -> Any:
    """A tabular classifier from ``TARGET:factory`` (see the module docstring); an estimator with
    ``predict_proba`` is wrapped over ``schema``."""
    from bastion.loading import factory_object
    from bastion.tabular import SklearnTabularClassifier

    target, sep, factory = spec.rpartition(":")
    if not sep or not target:
        raise ModelContractError(
            f"tabular model spec {spec!r}: use FILE.py:factory returning a tabular model"
        )
    built = factory_object(target, factory)
    if hasattr(built, "predict_proba") and not hasattr(built, "schema"):
        return SklearnTabularClassifier(built, schema)
    if not (callable(built) and hasattr(built, "schema") and hasattr(built, "num_classes")):
        raise ModelContractError(
            f"{spec}() returned {type(built).__name__}: return a bastion.tabular classifier (train_mlp, "
            "TorchTabularClassifier, SklearnTabularClassifier) or a fitted estimator with predict_proba"
        )
    return built
