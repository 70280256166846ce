"""The classifier contract and the PyTorch wrapper every attack works against."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from bastion.errors import DataError, ModelContractError
from bastion.threat import Bounds, check_bounds

__all__ = ["Classifier", "ProbabilityOutputWarning", "TorchClassifier", "as_classifier", "predict"]


class ProbabilityOutputWarning(UserWarning):
    """The model seems to return probabilities; attacks on logits are stronger (softmax saturates)."""


@runtime_checkable
class Classifier(Protocol):
    """Anything that maps a batch of inputs to logits.

    ``__call__(x)`` takes ``x`` of shape (N, ...) inside ``bounds`` and returns logits (N, num_classes).
    """

    bounds: Bounds

    @property
    def num_classes(self) -> int | None: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


def _as_stat(value: float | Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.dim() == 1:
        t = t.view(1, -1, 1, 1) if t.numel() > 1 else t.view(1)
    return t


def looks_like_probabilities(logits: torch.Tensor) -> bool:
    """True when every row is non-negative and sums to one (what softmax outputs)."""
    if logits.dim() != 2 or logits.shape[1] < 2:
        return False
    sums = logits.sum(dim=1)
    return bool((logits >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-3))


class TorchClassifier:
    """Wrap an ``nn.Module`` that returns logits.

    - Normalisation (``mean``/``std``, per channel) happens inside, so attacks work in input space.
    - The module is deep-copied and put in eval mode with frozen parameters: the caller's module (its
      ``training`` flag, its ``requires_grad``) is never touched, and attacks never pay for parameter
      gradients. Pass ``copy=False`` to share the module (then it is still not mutated; eval mode is
      entered and left around each call).
    - The first forward pass checks the outputs: probabilities instead of logits raise a
      :class:`ProbabilityOutputWarning` and set ``outputs_probabilities``.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        bounds: Bounds = (0.0, 1.0),
        num_classes: int | None = None,
        mean: float | Sequence[float] | torch.Tensor | None = None,
        std: float | Sequence[float] | torch.Tensor | None = None,
        copy: bool = True,
        name: str | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise ModelContractError(
                f"TorchClassifier needs a torch.nn.Module, got {type(module).__name__}; "
                "wrap plain callables in an nn.Module"
            )
        self.bounds = check_bounds(bounds)
        self._num_classes = num_classes
        self._mean = _as_stat(mean)
        self._std = _as_stat(std)
        if self._std is not None and bool((self._std <= 0).any()):
            raise ModelContractError("std must be positive in every channel")
        self._copied = copy
        self.module = self._frozen_copy(module) if copy else module
        self.name = name or type(module).__name__
        self.outputs_probabilities: bool | None = None

    @staticmethod
    def _frozen_copy(module: nn.Module) -> nn.Module:
        # Under no_grad, TorchScript parameters are cloned as leaves that can be frozen.
        with torch.no_grad():
            clone = copy.deepcopy(module)
        clone.eval()
        for p in clone.parameters():
            p.requires_grad_(False)
        return clone

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    @property
    def device(self) -> torch.device:
        for param in self.module.parameters():
            return param.device
        for buf in self.module.buffers():
            return buf.device
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> TorchClassifier:
        """Move the wrapped module (a copy when this wrapper owns one) to ``device``; returns self."""
        self.module.to(device)
        return self

    @property
    def mean(self) -> torch.Tensor | None:
        """Per-channel mean subtracted inside the classifier (shape (1, C, 1, 1) or (1,)), or None."""
        return self._mean

    @property
    def std(self) -> torch.Tensor | None:
        """Per-channel standard deviation divided by inside the classifier, or None."""
        return self._std

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in input space → what the wrapped module sees (training code reuses this)."""
        return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean is not None:
            x = x - self._mean.to(x.device, x.dtype)
        if self._std is not None:
            x = x / self._std.to(x.device, x.dtype)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) for inputs ``x`` (N, ...) in input space."""
        logits = self.module(self._normalise(x)) if self._copied else self._call_shared(x)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ModelContractError(
                f"model must return logits of shape (N, num_classes) for N={x.shape[0]} inputs, got {shape}"
            )
        if self.outputs_probabilities is None:
            self._check_first_output(logits)
        return logits

    def _call_shared(self, x: torch.Tensor) -> torch.Tensor:
        modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        try:
            return self.module(self._normalise(x))
        finally:
            for m, mode in modes:
                m.training = mode

    def _check_first_output(self, logits: torch.Tensor) -> None:
        if self._num_classes is None:
            self._num_classes = int(logits.shape[1])
        elif logits.shape[1] != self._num_classes:
            raise ModelContractError(
                f"model returned {logits.shape[1]} scores per input but num_classes={self._num_classes}"
            )
        self.outputs_probabilities = looks_like_probabilities(logits.detach())
        if self.outputs_probabilities:
            warnings.warn(
                f"model {self.name!r} seems to return probabilities, not logits: gradient attacks "
                "are weakened by a saturated softmax. Remove the final softmax layer.",
                ProbabilityOutputWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"TorchClassifier({self.name}, bounds={self.bounds}, num_classes={self._num_classes})"


def as_classifier(model: Classifier | nn.Module, *, bounds: Bounds | None = None) -> Classifier:
    """Accept a ready classifier or wrap a bare ``nn.Module`` (bounds default to [0, 1])."""
    if isinstance(model, nn.Module):
        return TorchClassifier(model, bounds=bounds or (0.0, 1.0))
    if callable(model) and hasattr(model, "bounds"):
        return model
    raise ModelContractError(f"expected a bastion Classifier or torch.nn.Module, got {type(model).__name__}")


@torch.no_grad()
def predict(model: Classifier, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """Logits for ``x`` computed in batches without gradients; shape (N, K)."""
    if x.shape[0] == 0:
        raise DataError("no inputs to predict on (empty batch)")
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
