"""Random draws keyed by example, so a result never depends on the batch, the shard or the worker.

A ``torch.Generator`` shared by a batch hands example ``i`` whatever numbers come after the draws of the
examples before it: change the batch size, split the data over workers, or drop an example that was
already misclassified, and every later example sees different noise. :class:`ExampleRNG` instead makes
row ``r`` of every draw a pure function of ``(seed, example id of r, how many draws that example has
taken part in)``. The draw counter is per example, so restarts, stages and shrinking active sets (an
attack that stops drawing for examples it has already fooled) keep each example's stream its own.

The numbers come from a counter-based generator (SplitMix64's finaliser over 64-bit integer tensors,
which wrap around on every torch device): uniform and integer draws are bit-identical on CPU and CUDA,
normal draws equal to the last bits of ``log`` and ``cos``. Attack code takes either kind through the
small functions below (:func:`uniform`, :func:`normal`, :func:`integers`, :func:`rows`), so a caller's own
``torch.Generator`` still works, with the batch-dependent draws it implies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "ExampleRNG",
    "Pieces",
    "Randomness",
    "example_ids",
    "integers",
    "mix",
    "normal",
    "rows",
    "stream_seed",
    "torch_generator",
    "uniform",
]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)
_STREAM = _signed(0xD1B54A32D192ED03)  # a second odd constant, so ids and counters do not alias


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; SplitMix64 needs a logical shift
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on an int64 tensor (a bijection of 64-bit words with good avalanche)."""
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


_U64 = (1 << 64) - 1


def _mix_int(v: int) -> int:
    """:func:`mix` on one Python int (unsigned 64-bit result), without a tensor."""
    z = v & _U64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    return z ^ (z >> 31)


def stream_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for a ``torch.Generator`` that is a function of ``seed`` and ``keys`` only (for
    example ``(example index, stage)``): where a whole per-example generator is cheaper than keyed draws."""
    z = _mix_int(int(seed))
    for k in keys:
        z = _mix_int(z + _GOLDEN * (int(k) + 1))
    return z & ((1 << 63) - 1)


def _keys(seed: int, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    base = mix(torch.full_like(ids, _signed(_mix_int(int(seed)))) + ids * _GOLDEN)
    return mix(base + (counts + 1) * _STREAM)


def _bits(keys: torch.Tensor, m: int, start: int = 0) -> torch.Tensor:
    """Words ``start`` … ``start + m - 1`` of each row's stream: (n, m) int64."""
    j = torch.arange(start + 1, start + m + 1, device=keys.device, dtype=torch.int64)
    return mix(keys[:, None] + j[None, :] * _GOLDEN)


def _uniform_at(keys: torch.Tensor, start: int, m: int, dtype: torch.dtype) -> torch.Tensor:
    return _unit(_bits(keys, m, start), dtype)


def _normal_at(keys: torch.Tensor, start: int, m: int, dtype: torch.dtype) -> torch.Tensor:
    # element j takes words 2j and 2j + 1 (Box-Muller in float64), so a draw made in pieces is the whole
    bits = _bits(keys, 2 * m, 2 * start).view(-1, m, 2)
    u1 = 1.0 - _unit(bits[..., 0], torch.float64)  # (0, 1]: log is finite
    u2 = _unit(bits[..., 1], torch.float64)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)


def _unit(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Uniform [0, 1) in ``dtype`` from 64 random bits: 53 of them for float64, 24 otherwise (exact in
    float32); half precisions round, so the top is clamped below 1."""
    if dtype == torch.float64:
        return _shr(bits, 11).to(torch.float64) * 2.0**-53
    u = _shr(bits, 40).to(torch.float32) * 2.0**-24
    if dtype == torch.float32:
        return u
    top = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    return u.to(dtype).clamp_(max=float(top))


class ExampleRNG(torch.Generator):
    """Per-example random streams for a batch whose rows are the examples ``ids``.

    It is also a ``torch.Generator`` (seeded from the seed and the ids), so attack code written for a
    plain generator (``torch.randn(..., generator=g)``) still runs, with batch-level draws; bastion's own
    attacks draw through :func:`uniform`, :func:`normal` and :func:`integers`, which use the streams.

    >>> rng = ExampleRNG(seed=0, ids=torch.arange(4))
    >>> part = ExampleRNG(seed=0, ids=torch.tensor([2, 3]))
    >>> bool((rng.rand((5,))[2:] == part.rand((5,))).all())
    True

    :meth:`rows` gives a view on some rows that shares their draw counters, for attacks that work on an
    active subset.
    """

    run_seed: int
    _ids: torch.Tensor
    _counts: torch.Tensor
    _pos: torch.Tensor
    _views: list[int]

    def __new__(
        cls, seed: int, ids: torch.Tensor | Sequence[int], *, device: torch.device | str | None = None
    ) -> ExampleRNG:
        if device is None:
            device = ids.device if isinstance(ids, torch.Tensor) else "cpu"
        return torch.Generator.__new__(cls, device=torch.device(device))  # type: ignore[call-arg]

    def __init__(
        self, seed: int, ids: torch.Tensor | Sequence[int], *, device: torch.device | str | None = None
    ):
        ids_t = torch.as_tensor(ids, dtype=torch.int64, device=self.device).flatten()
        if ids_t.unique().numel() != ids_t.numel():
            raise ValueError("example ids must be distinct: two rows with one id would draw the same numbers")
        self.run_seed = int(seed)
        self._ids = ids_t
        self._counts = torch.zeros_like(ids_t)
        self._pos = torch.arange(ids_t.numel(), device=ids_t.device)
        self._views = [0]
        self.manual_seed(self.batch_seed())

    @property
    def n(self) -> int:
        return int(self._pos.numel())

    @property
    def ids(self) -> torch.Tensor:
        return self._ids[self._pos]

    def rows(self, index: torch.Tensor) -> ExampleRNG:
        """A view on the rows ``index`` (bool mask or integer index, as for the batch) sharing counters."""
        view = torch.Generator.__new__(ExampleRNG, device=self.device)  # type: ignore[call-arg]
        view.run_seed, view._ids, view._counts, view._views = (
            self.run_seed,
            self._ids,
            self._counts,
            self._views,
        )
        view._pos = self._pos[index.to(self._pos.device)]
        if view._pos.ndim != 1:
            raise ValueError("rows() takes a 1-d index or mask over the batch")
        self._views[0] += 1  # a cheap, deterministic seed for the view's own torch stream
        view.manual_seed(_mix_int(self.run_seed + _GOLDEN * self._views[0]) & ((1 << 63) - 1))
        return view

    def _next_keys(self) -> torch.Tensor:
        pos = self._pos
        keys = _keys(self.run_seed, self._ids[pos], self._counts[pos])
        self._counts.index_add_(0, pos, torch.ones_like(pos))
        return keys

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform [0, 1): shape ``(n, *shape)``."""
        return _uniform_at(self._next_keys(), 0, math.prod(shape), dtype).view(self.n, *shape)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal (Box-Muller in float64): shape ``(n, *shape)``."""
        return _normal_at(self._next_keys(), 0, math.prod(shape), dtype).view(self.n, *shape)

    def randint(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        """Integers uniform in ``[low, high)``: shape ``(n, *shape)``, int64."""
        if high <= low:
            raise ValueError(f"randint needs low < high, got [{low}, {high})")
        u = _uniform_at(self._next_keys(), 0, math.prod(shape), torch.float64)
        return (low + (u * (high - low)).floor().to(torch.int64)).clamp_(max=high - 1).view(self.n, *shape)

    def batch_seed(self) -> int:
        """One seed for work that is about the batch as a whole (a surrogate trained on all its rows)."""
        ids = self.ids.sort().values.tolist()
        return stream_seed(self.run_seed, len(ids), *ids[:64], *ids[-64:])


Randomness = torch.Generator | ExampleRNG


class Pieces:
    """One draw of shape ``(n, total, *shape)`` made in pieces along dimension 1 (for memory): with
    per-example streams the pieces equal the whole draw however it is cut, so a chunk size that depends
    on the batch does not leak into the numbers. Each row's counter advances once, on construction."""

    def __init__(self, g: Randomness, n: int):
        self._g = g
        self._keys = g._next_keys() if isinstance(g, ExampleRNG) else None
        if isinstance(g, ExampleRNG) and g.n != n:
            raise ValueError(f"Pieces for {n} rows from randomness over {g.n} rows")
        self.n = n

    def _draw(
        self, start: int, count: int, shape: Sequence[int], like: torch.Tensor, gauss: bool
    ) -> torch.Tensor:
        if self._keys is None:
            assert isinstance(self._g, torch.Generator)
            fn = torch.randn if gauss else torch.rand
            return fn((self.n, count, *shape), generator=self._g, device=like.device, dtype=like.dtype)
        per = math.prod(shape)
        at = _normal_at if gauss else _uniform_at
        return (
            at(self._keys, start * per, count * per, like.dtype).to(like.device).view(self.n, count, *shape)
        )

    def uniform(self, start: int, count: int, shape: Sequence[int], *, like: torch.Tensor) -> torch.Tensor:
        """Uniform [0, 1): items ``start`` … ``start + count - 1``, shape ``(n, count, *shape)``."""
        return self._draw(start, count, shape, like, gauss=False)

    def normal(self, start: int, count: int, shape: Sequence[int], *, like: torch.Tensor) -> torch.Tensor:
        """Standard normal: items ``start`` … ``start + count - 1``, shape ``(n, count, *shape)``."""
        return self._draw(start, count, shape, like, gauss=True)


def example_ids(
    n: int,
    ids: Sequence[int] | torch.Tensor | None,
    *,
    unit: str = "input",
    error: type[Exception] = ValueError,
) -> torch.Tensor:
    """The ids (int64, CPU, one per example) of ``n`` examples: their positions when ``ids`` is None,
    else ``ids`` flattened; ``error`` names the mismatch when there is not one id per ``unit``."""
    out = (
        torch.arange(n)
        if ids is None
        else torch.as_tensor(ids if isinstance(ids, torch.Tensor) else list(ids), dtype=torch.int64)
        .flatten()
        .cpu()
    )
    if out.numel() != n:
        raise error(f"{n} {unit}s but {out.numel()} example_ids; give one id per {unit}")
    return out


def _check_rows(g: ExampleRNG, shape: Sequence[int]) -> None:
    if not shape or shape[0] != g.n:
        raise ValueError(
            f"a per-example draw's first dimension must be the {g.n} rows, got shape {tuple(shape)}"
        )


def uniform(g: Randomness, shape: Sequence[int], *, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) of ``shape`` (rows first) on ``like``'s device and dtype."""
    if isinstance(g, ExampleRNG):
        _check_rows(g, shape)
        return g.rand(tuple(shape[1:]), like.dtype).to(like.device)
    return torch.rand(tuple(shape), generator=g, device=like.device, dtype=like.dtype)


def normal(g: Randomness, shape: Sequence[int], *, like: torch.Tensor) -> torch.Tensor:
    """Standard normal of ``shape`` (rows first) on ``like``'s device and dtype."""
    if isinstance(g, ExampleRNG):
        _check_rows(g, shape)
        return g.randn(tuple(shape[1:]), like.dtype).to(like.device)
    return torch.randn(tuple(shape), generator=g, device=like.device, dtype=like.dtype)


def integers(
    g: Randomness, low: int, high: int, shape: Sequence[int], *, device: torch.device
) -> torch.Tensor:
    """int64 uniform in ``[low, high)`` of ``shape`` (rows first) on ``device``."""
    if isinstance(g, ExampleRNG):
        _check_rows(g, shape)
        return g.randint(low, high, tuple(shape[1:])).to(device)
    return torch.randint(low, high, tuple(shape), generator=g, device=device)


def rows(g: Randomness, index: torch.Tensor) -> Randomness:
    """The randomness for the rows ``index`` of the batch: a view for per-example streams; a shared
    ``torch.Generator`` is the same object (its draws depend on the batch anyway)."""
    return g.rows(index) if isinstance(g, ExampleRNG) else g


def torch_generator(g: Randomness, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` for batch-level work (training a surrogate on the whole batch)."""
    if isinstance(g, ExampleRNG):
        return torch.Generator(device=device).manual_seed(g.batch_seed())
    return g
