"""The poisoning contract: hyperparameters at construction, ``attack(data, seed=, model=)`` at call time.

``PoisonAttack.__call__`` is final: it validates the data, seeds a generator, runs the subclass's
``_poison`` and checks what came back (samples not marked ``poisoned`` are the originals, bit for bit).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn

from bastion.attacks.poisoning.result import PoisonResult
from bastion.data.dataset import Dataset
from bastion.errors import AttackError, DataError
from bastion.model import Classifier

__all__ = ["PoisonAttack", "check_class", "check_rate", "check_target", "choose"]


def check_rate(rate: float) -> float:
    """``rate`` as a float; AttackError unless it is a number in [0, 1]."""
    ok = isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate)
    if not ok or not 0.0 <= float(rate) <= 1.0:
        raise AttackError(f"rate is a share of samples in [0, 1] (e.g. 0.05 for 5%), got {rate!r}")
    return float(rate)


def check_class(name: str, value: int | None) -> int | None:
    """``value`` as an int class index (or None); AttackError for negatives and non-integers."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AttackError(f"{name} must be a class index (an integer >= 0), got {value!r}")
    return int(value)


def check_target(data: Dataset, name: str, value: int) -> None:
    """AttackError when class ``value`` does not exist in ``data``."""
    if value >= data.num_classes:
        raise AttackError(
            f"{name}={value} is not a class of {data.name}, which has {data.num_classes} "
            f"(0..{data.num_classes - 1})"
        )


def choose(pool: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` entries of the index tensor ``pool``, drawn without replacement by ``generator`` and
    returned ascending, on ``pool``'s device."""
    if count > pool.numel():
        raise DataError(f"cannot draw {count} samples from a pool of {pool.numel()}")
    order = torch.randperm(pool.numel(), generator=generator)[:count].to(pool.device)
    return pool[order].sort().values


class PoisonAttack(ABC):
    """Base of every poisoning attack::

    result = Backdoor(PatchTrigger(), target=0, rate=0.05)(data, seed=0)
    """

    name: ClassVar[str] = "poison"
    needs_model: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """The hyperparameters (public attributes of simple types; a trigger by its ``params()``)."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if k.startswith("_"):
                continue
            if isinstance(v, int | float | str | bool | type(None)):
                out[k] = v
            elif hasattr(v, "params"):
                out[k] = v.params()
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def __call__(
        self, data: Dataset, *, seed: int = 0, model: Classifier | nn.Module | None = None
    ) -> PoisonResult:
        """Poison ``data``; the same ``seed`` picks the same samples. ``model`` (a surrogate classifier) is
        used only by attacks that need one (``needs_model``) and ignored by the others."""
        if not isinstance(data, Dataset):
            raise DataError(f"data must be a bastion Dataset (see bastion.data), got {type(data).__name__}")
        if len(data) == 0:
            raise DataError(f"{data.name} is empty: nothing to poison")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise AttackError(f"seed must be an integer, got {seed!r}")
        if self.needs_model and model is None:
            raise AttackError(
                f"{self.name} needs a surrogate classifier: pass model=... (trained on clean data)"
            )
        generator = torch.Generator().manual_seed(seed)
        result = replace(self._poison(data, generator, model), seed=seed)
        self._verify(data, result)
        return result

    @abstractmethod
    def _poison(
        self, data: Dataset, generator: torch.Generator, model: Classifier | nn.Module | None
    ) -> PoisonResult:
        """The algorithm; randomness from ``generator`` only."""

    @staticmethod
    def _verify(data: Dataset, result: PoisonResult) -> None:
        n = len(data)
        new = result.dataset
        clean = ~result.poisoned[:n].to(data.y.device)
        same = (
            len(new) >= n
            and torch.equal(result.original_labels[:n], data.y)
            and torch.equal(new.y[:n][clean], data.y[clean])
            and torch.equal(new.x[:n][clean], data.x[clean])
        )
        if not same:
            raise AttackError("internal error: samples outside the poisoned mask changed; please report it")
