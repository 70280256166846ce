"""The model zoo: small classifiers trained by ``scripts/train_zoo.py``, shipped as safetensors.

>>> from bastion import zoo
>>> zoo.available()
['cifar10-cnn', 'digits-cnn', 'digits-mlp', 'mnist-cnn']
>>> model = zoo.load("digits-cnn")          # a TorchClassifier returning logits, inputs in [0, 1]
>>> zoo.card("digits-cnn")["clean_accuracy"]  # measured on the full test split by the training script

Each model's card (``weights/<name>.json``) records the dataset, recipe, seed, clean accuracy and the sha256
of the weights file; :func:`load` refuses weights whose hash does not match their card.
"""

from __future__ import annotations

import json
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from typing import Any

import torch
from torch import nn

from bastion.errors import ModelContractError, UnsafeArtifactError
from bastion.model import TorchClassifier
from bastion.zoo.architectures import build, spec, spec_names

__all__ = ["available", "build", "card", "load"]

_CARD_FIELDS = ("name", "num_classes", "bounds", "mean", "std", "sha256", "clean_accuracy")


def _weights_dir() -> Traversable:
    return files("bastion.zoo") / "weights"


def available() -> list[str]:
    """The names :func:`load` accepts, sorted."""
    return sorted(spec_names())


def _file(name: str, suffix: str) -> Traversable:
    spec(name)  # unknown names fail here, with the list of valid ones
    path = _weights_dir() / f"{name}{suffix}"
    if not path.is_file():
        raise ModelContractError(
            f"zoo model {name!r} has no {suffix} file in the package; retrain it with "
            f"`python scripts/train_zoo.py --model {name}`"
        )
    return path


def card(name: str) -> dict[str, Any]:
    """The model card of ``name`` (a fresh dict each call): dataset, recipe, clean accuracy, sha256, ..."""
    data: dict[str, Any] = json.loads(_file(name, ".json").read_text(encoding="utf-8"))
    missing = [f for f in _CARD_FIELDS if f not in data] if isinstance(data, dict) else list(_CARD_FIELDS)
    if missing:
        raise ModelContractError(f"model card of {name!r} is malformed: missing fields {missing}")
    if data["name"] != name:
        raise ModelContractError(f"model card of {name!r} describes another model ({data['name']!r})")
    return data


def load(name: str) -> TorchClassifier:
    """The trained zoo model ``name`` as a :class:`TorchClassifier` named ``zoo:<name>``.

    Inputs live in the card's ``bounds`` (here [0, 1]); per-channel normalisation, when the recipe used it,
    happens inside the classifier. The output is logits (N, num_classes). Raises
    :class:`ModelContractError` for unknown names and :class:`UnsafeArtifactError` when the weights file's
    sha256 differs from the card's.
    """
    from bastion.loading import read_state_dict, sha256_file  # the one place that reads model artifacts

    info = card(name)
    with as_file(_file(name, ".safetensors")) as path:
        digest = sha256_file(path)
        if digest != info["sha256"]:
            raise UnsafeArtifactError(
                f"weights of zoo model {name!r} do not match their card (sha256 {digest[:12]}… != "
                f"{str(info['sha256'])[:12]}…); reinstall bastion or retrain with scripts/train_zoo.py"
            )
        state = read_state_dict(path)
    with torch.random.fork_rng(devices=[]):  # random init is overwritten anyway: leave the global RNG alone
        module: nn.Module = build(name)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelContractError(f"weights of zoo model {name!r} do not fit its architecture: {exc}") from exc
    low, high = info["bounds"]
    return TorchClassifier(
        module,
        bounds=(float(low), float(high)),
        num_classes=int(info["num_classes"]),
        mean=info["mean"],
        std=info["std"],
        name=f"zoo:{name}",
    )
