"""What every per-key query detector shares: the Flag it raises, the protocol the gateway calls, a
seeded input encoder and an LRU of per-key states that bounds memory whatever the traffic."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

import torch

from bastion.errors import GatewayError

__all__ = ["KEY_OVERHEAD_BYTES", "Encoder", "Flag", "KeyStates", "QueryDetector", "check_positive_int"]

# A rough, fixed charge per tracked key for the Python objects around its arrays (dict slot, state
# object, deque headers); memory_bytes adds it so an LRU full of tiny states is not reported as free.
KEY_OVERHEAD_BYTES = 512


class Flag(NamedTuple):
    """One detector's verdict on one request: ``score`` crossed ``threshold`` (direction per detector)."""

    detector: str
    score: float
    threshold: float
    message: str


@runtime_checkable
class QueryDetector(Protocol):
    """A stateful per-key detector the gateway feeds with every answered request."""

    name: str

    def observe(self, key_id: str, x: torch.Tensor, released: torch.Tensor) -> list[Flag]:
        """``x`` (N, ...) the validated inputs, ``released`` (N, K) what the key was given."""
        ...

    def memory_bytes(self) -> int:
        """Bytes held for all keys; bounded by the detector's per-key caps and key LRU."""
        ...


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GatewayError(f"{name} must be a whole number >= 1, got {value!r}; pass a positive integer")
    return value


class Encoder:
    """Flattened inputs, scaled to root-mean-square units and, above ``dim`` features, projected.

    Distances between codes approximate ``||a - b||_2 / sqrt(D)`` (D the input's feature count), so
    thresholds read the same for 8x8 and 28x28 images. Inputs with more than ``dim`` features go
    through a fixed Gaussian random projection seeded by ``seed`` (Johnson–Lindenstrauss: distances
    kept within roughly ``1/sqrt(dim)`` relative error), which caps what each stored query costs.
    """

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.dim = check_positive_int("dim", dim)
        self.seed = seed
        self._projection: torch.Tensor | None = None
        self._features: int | None = None

    @property
    def out_dim(self) -> int | None:
        """Code length once the first input fixed the feature count (None before)."""
        if self._features is None:
            return None
        return self.dim if self._features > self.dim else self._features

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().reshape(x.shape[0], -1).to(device="cpu", dtype=torch.float32)
        d = flat.shape[1]
        if self._features is None:
            self._features = d
            if d > self.dim:
                g = torch.Generator().manual_seed(self.seed)
                self._projection = torch.randn(d, self.dim, generator=g) / math.sqrt(self.dim)
        elif d != self._features:
            raise GatewayError(
                f"inputs have {d} features but this detector has seen {self._features}; "
                "use one detector per model input shape"
            )
        flat = flat / math.sqrt(d)
        return flat if self._projection is None else flat @ self._projection

    def nbytes(self) -> int:
        return 0 if self._projection is None else self._projection.numel() * 4


S = TypeVar("S")


class KeyStates(Generic[S]):
    """Per-key states in least-recently-used order; at most ``max_keys``, the stalest dropped first.

    Dropping a key forgets its history: an attacker who rotates through more than ``max_keys`` keys
    resets each one. Size ``max_keys`` above the number of keys active within a detection window.
    """

    def __init__(self, factory: Callable[[], S], max_keys: int) -> None:
        self.factory = factory
        self.max_keys = check_positive_int("max_keys", max_keys)
        self._states: OrderedDict[str, S] = OrderedDict()

    def get(self, key_id: str) -> S:
        state = self._states.get(key_id)
        if state is None:
            state = self._states[key_id] = self.factory()
            while len(self._states) > self.max_keys:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key_id)
        return state

    def pop(self, key_id: str) -> None:
        self._states.pop(key_id, None)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._states

    def values(self) -> Iterator[S]:
        return iter(self._states.values())


class Ring:
    """A fixed-capacity buffer of codes (rows) that grows by doubling up to ``capacity``, then
    overwrites its oldest row; so a key that sent 3 queries costs 3 rows, not ``capacity``."""

    __slots__ = ("capacity", "count", "data", "pos")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: torch.Tensor | None = None
        self.count = 0
        self.pos = 0

    def append(self, row: torch.Tensor) -> None:
        if self.count < self.capacity:
            if self.data is None or self.count == self.data.shape[0]:
                grown = torch.empty(min(max(4, 2 * self.count), self.capacity), row.shape[0])
                if self.data is not None:
                    grown[: self.count] = self.data
                self.data = grown
            self.data[self.count] = row
            self.count += 1
        elif self.data is not None:  # full: overwrite the oldest row
            self.data[self.pos] = row
            self.pos = (self.pos + 1) % self.capacity

    def rows(self) -> torch.Tensor:
        if self.data is None:
            return torch.empty(0, 0)
        return self.data[: self.count]

    def clear(self) -> None:
        self.data, self.count, self.pos = None, 0, 0

    def nbytes(self) -> int:
        return 0 if self.data is None else self.data.numel() * 4
