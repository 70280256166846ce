"""Fixed shards of example indices.

A run's shards depend only on the number of examples and the shard size, never on the workers: shard
``k`` holds examples ``[k * size, min((k + 1) * size, n))``. Shards carry no seeds of their own: every
random draw is keyed by the run's seed and the example's index (:mod:`bastion.rng`), so an example draws
the same numbers in any shard, on any worker, in any order, on a retry or after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.errors import BastionError

__all__ = ["RNG_SCHEME", "Shard", "make_shards"]

# How random draws are keyed, recorded in every run's identity so a run directory written under another
# scheme is refused rather than resumed with different noise.
RNG_SCHEME = "per-example-splitmix64-v1"


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
