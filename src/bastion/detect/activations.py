"""A network's internal representation of its inputs: what the data scanners and drift tests look at.

Activation clustering (Chen et al. 2018) and spectral signatures (Tran et al. 2018) separate poisoned
samples from clean ones in the penultimate layer, where a backdoor's shortcut feature is most visible;
drift tests compare embeddings rather than pixels. One function reads any layer of a PyTorch classifier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bastion.errors import DataError, ModelContractError
from bastion.model import Classifier, TorchClassifier

__all__ = ["FEATURES", "PENULTIMATE", "layer_activations", "layer_names"]

PENULTIMATE = "penultimate"
"""The default layer: the input of the network's last ``nn.Linear`` (the features the logits are a
linear function of)."""

FEATURES = "features"
"""The input of the network's *first* ``nn.Linear``: a CNN's flattened convolutional features (an MLP's
input). A backdoor's trigger is still its own feature there; a deep classifier head merges it with the
target class's clean samples on the way to the penultimate layer (measured in docs/poisoning.md)."""


def _module(model: Classifier) -> nn.Module:
    if not isinstance(model, TorchClassifier):
        raise ModelContractError(
            "reading a layer's activations needs a PyTorch model (a TorchClassifier or nn.Module); "
            f"got {type(model).__name__}, which only exposes predictions"
        )
    return model.module


def layer_names(model: Classifier | nn.Module) -> list[str]:
    """The named sub-modules whose outputs :func:`layer_activations` can read, in definition order."""
    module = model if isinstance(model, nn.Module) else _module(model)
    return [name for name, _ in module.named_modules() if name]


def _resolve(module: nn.Module, layer: str) -> tuple[nn.Module, bool]:
    """The hooked module and whether its *input* (True, the penultimate case) or output is read."""
    if layer in (PENULTIMATE, FEATURES):
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ModelContractError(
                f"the model has no nn.Linear layer, so it has no {layer!r} layer to read; "
                f"name one of its layers instead: {', '.join(layer_names(module)) or '(none)'}"
            )
        return linears[-1 if layer == PENULTIMATE else 0], True
    named = dict(module.named_modules())
    if not layer or layer not in named:
        raise ModelContractError(
            f"the model has no layer {layer!r}; use {PENULTIMATE!r}, {FEATURES!r} or one of: "
            f"{', '.join(n for n in named if n) or '(none)'}"
        )
    return named[layer], False


@torch.no_grad()
def layer_activations(
    model: Classifier | nn.Module,
    x: torch.Tensor,
    layer: str = PENULTIMATE,
    *,
    batch_size: int = 512,
) -> torch.Tensor:
    """Activations (N, D) of ``layer`` for inputs ``x`` (N, ...) in input space, flattened per sample.

    ``layer`` is ``"penultimate"`` (the input of the last ``nn.Linear``), ``"features"`` (the input of the
    first) or a sub-module name from :func:`layer_names` (its output is read). The model runs in eval
    mode through its own normalisation; it is not modified (the hook is removed even on error).
    """
    clf = model if not isinstance(model, nn.Module) else TorchClassifier(model, copy=False)
    module = _module(clf)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise DataError("x must be a non-empty batch of inputs, shape (N, ...)")
    if not bool(torch.isfinite(x).all()):
        raise DataError("x contains NaN or infinite values; clean the data first")
    target, read_input = _resolve(module, layer)
    captured: list[torch.Tensor] = []

    def keep(_: nn.Module, inputs: tuple[Any, ...], output: Any = None) -> None:
        value = inputs[0] if read_input else output
        if not isinstance(value, torch.Tensor):
            raise ModelContractError(f"layer {layer!r} does not produce a tensor; pick another layer")
        captured.append(value.detach().flatten(1))

    handle = target.register_forward_pre_hook(keep) if read_input else target.register_forward_hook(keep)
    parts = []
    try:
        for i in range(0, x.shape[0], batch_size):
            captured.clear()
            clf(x[i : i + batch_size])
            if not captured:
                raise ModelContractError(f"layer {layer!r} is not used by the model's forward pass")
            parts.append(captured[-1])
    finally:
        handle.remove()
    return torch.cat(parts)
