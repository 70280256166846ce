"""Fixed shards of example indices, and the seeds derived from them.

A run's shards depend only on the number of examples and the shard size, never on the workers: shard
``k`` holds examples ``[k * size, min((k + 1) * size, n))``. Its seed is a function of the run's seed and
the index of its first example, so a shard draws the same random numbers on any worker, in any order,
on a retry or after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.errors import BastionError

__all__ = ["Shard", "make_shards", "shard_seed"]

_STRIDE = 1_000_003  # a prime: shard seeds of nearby runs (seed, seed + 1) do not coincide
_MASK = (1 << 62) - 1


@dataclass(frozen=True, order=True)
class Shard:
    """Shard ``index`` covers examples ``start`` (inclusive) to ``stop`` (exclusive)."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"shard {self.index} (examples {self.start}-{self.stop - 1})"


def make_shards(n: int, size: int) -> list[Shard]:
    """``ceil(n / size)`` shards of ``size`` consecutive examples (the last may be shorter)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BastionError(f"a run needs at least one example, got n={n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BastionError(f"shard size must be a whole number >= 1, got {size!r}")
    return [Shard(k, lo, min(lo + size, n)) for k, lo in enumerate(range(0, n, size))]


def shard_seed(seed: int, shard: Shard) -> int:
    """The seed of ``shard``'s work: ``seed`` for the shard starting at example 0 (so a one-shard run
    draws what an unsharded one does), else a function of ``seed`` and the shard's first example."""
    return (int(seed) + _STRIDE * shard.start) & _MASK
