"""PRADA: flag a key whose queries' minimum distances stop looking normally distributed.

Juuti, Szyller, Marchal, Asokan, "PRADA: Protecting against DNN Model Stealing Attacks", EuroS&P 2019
(Algorithm 1). For each key and each predicted class c, a growing set G_c of the key's past queries;
a new query x predicted c records d = min over G_c of ||x - g|| in the key's distance set D, and joins
G_c when d exceeds the class threshold T_c = max(T_c, mean(D_Gc) - std(D_Gc)), D_Gc being the
distances recorded for G_c's own members. Natural queries give minimum distances close to normal;
synthetic ones (Jacobian augmentation's small steps from seeds, Papernot et al.'s and Tramèr et al.'s
substitutes) give a spike of tiny distances next to the natural ones. Once D holds ``min_samples``
distances, the Shapiro–Wilk statistic W of D below ``delta`` flags the key.

Bounds (not in the paper): each G_c keeps its ``max_per_class`` most recent members (a ring), D its
``window`` most recent distances, and at most ``max_keys`` keys are tracked (least recently used
dropped). Distances are taken between :class:`~bastion.serve.detect._base.Encoder` codes (RMS pixel
units, random projection above ``dim`` features); W does not depend on the units.

What it misses (the paper's own limits): queries from a natural pool (Knockoff) have natural distances
and pass; an attacker spreading queries over keys keeps each key's D short or natural. Pair it with
:class:`~bastion.serve.detect.ood.OODRateDetector`.
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np
import torch
from scipy import stats

from bastion.errors import GatewayError
from bastion.serve.detect._base import KEY_OVERHEAD_BYTES, Encoder, Flag, KeyStates, Ring, check_positive_int

__all__ = ["CLASS_OVERHEAD_BYTES", "DEFAULT_DELTA", "PRADA"]

# The paper picks delta per dataset. Benign keys sending natural inputs in a seeded random order
# (20 keys x the 1,347 digits training images; 20 keys x 1,000 of 5,000 MNIST training images; W read
# after every request once min_samples distances exist) never went below 0.9456 (digits) and 0.9469
# (MNIST); the default sits 0.015 under both, which is what calibrate() does with its defaults.
# Jacobian augmentation (150 seeds, lambda 0.1) reaches W 0.90 on MNIST but only 0.94 on digits.
DEFAULT_DELTA = 0.93
CLASS_OVERHEAD_BYTES = 1024


class _KeyState:
    __slots__ = ("dists", "grown", "members", "thresholds")

    def __init__(self, window: int) -> None:
        self.members: dict[int, Ring] = {}
        self.grown: dict[int, deque[float]] = {}  # D_Gc: the distances that admitted G_c's members
        self.thresholds: dict[int, float] = {}
        self.dists: deque[float] = deque(maxlen=window)


class PRADA:
    """Per-key Shapiro–Wilk test of minimum inter-query distances (per predicted class)."""

    name = "prada"

    def __init__(
        self,
        *,
        delta: float = DEFAULT_DELTA,
        min_samples: int = 100,
        window: int = 1000,
        max_per_class: int = 32,
        dim: int = 64,
        max_keys: int = 1000,
        seed: int = 0,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise GatewayError(f"delta is a Shapiro-Wilk W in (0, 1), got {delta}; the paper uses 0.87-0.96")
        self.delta = float(delta)
        self.min_samples = max(3, check_positive_int("min_samples", min_samples))
        self.window = check_positive_int("window", window)
        if self.window < self.min_samples:
            raise GatewayError(f"window ({window}) must hold min_samples ({min_samples}) distances; raise it")
        self.max_per_class = check_positive_int("max_per_class", max_per_class)
        self.encoder = Encoder(dim, seed)
        self.keys: KeyStates[_KeyState] = KeyStates(lambda: _KeyState(self.window), max_keys)

    def calibrate(
        self,
        benign_x: torch.Tensor,
        benign_released: torch.Tensor,
        *,
        keys: int = 20,
        per_key: int | None = 1000,
        batch: int = 16,
        margin: float = 0.015,
        seed: int = 0,
    ) -> PRADA:
        """Set ``delta`` to the lowest W that ``keys`` benign keys reach (each sends ``per_key`` of
        ``benign_x`` in its own seeded order, ``batch`` rows a request) minus ``margin``. Returns self."""
        if not 0.0 <= margin < 1.0:
            raise GatewayError(f"margin is a W difference in [0, 1), got {margin}")
        probe = PRADA(
            delta=0.5,
            min_samples=self.min_samples,
            window=self.window,
            max_per_class=self.max_per_class,
            dim=self.encoder.dim,
            max_keys=1,
            seed=self.encoder.seed,
        )
        lowest = 1.0
        for k in range(check_positive_int("keys", keys)):
            g = torch.Generator().manual_seed(seed + k)
            order = torch.randperm(benign_x.shape[0], generator=g)[:per_key]
            probe.keys.pop("calibration")
            for i in range(0, len(order), batch):
                rows = order[i : i + batch]
                probe.observe("calibration", benign_x[rows], benign_released[rows])
                w = probe.statistic("calibration")
                lowest = lowest if w is None else min(lowest, w)
        if lowest >= 1.0:
            raise GatewayError(
                f"calibration needs more than min_samples={self.min_samples} benign inputs per key"
            )
        self.delta = max(lowest - margin, 1e-6)
        return self

    def _add(self, state: _KeyState, code: torch.Tensor, label: int) -> None:
        members = state.members.get(label)
        if members is None:  # the first query of a class starts G_c and records no distance
            state.members[label] = ring = Ring(self.max_per_class)
            state.grown[label] = deque(maxlen=self.max_per_class)
            state.thresholds[label] = 0.0
            ring.append(code)
            return
        d = float(torch.linalg.vector_norm(members.rows() - code, dim=1).min())
        state.dists.append(d)
        if d > state.thresholds[label]:
            members.append(code)
            grown = state.grown[label]
            grown.append(d)
            g = np.fromiter(grown, dtype=np.float64)
            state.thresholds[label] = max(state.thresholds[label], float(g.mean() - g.std()))

    def statistic(self, key_id: str) -> float | None:
        """The key's current W (None while it has fewer than ``min_samples`` distances)."""
        if key_id not in self.keys:
            return None
        return self._w(self.keys.get(key_id))

    def _w(self, state: _KeyState) -> float | None:
        if len(state.dists) < self.min_samples:
            return None
        d = np.fromiter(state.dists, dtype=np.float64)
        if np.ptp(d) == 0.0:  # all equal (e.g. exact repeats): as far from normal as it gets
            return 0.0
        with warnings.catch_warnings():  # scipy warns about n > 5000 p-values; W itself is fine
            warnings.simplefilter("ignore")
            return float(stats.shapiro(d).statistic)

    def observe(self, key_id: str, x: torch.Tensor, released: torch.Tensor) -> list[Flag]:
        state = self.keys.get(key_id)
        labels = released.detach().argmax(dim=1).tolist()
        for code, label in zip(self.encoder(x), labels, strict=True):
            self._add(state, code, int(label))
        w = self._w(state)
        if w is None or w >= self.delta:
            return []
        return [
            Flag(
                self.name,
                w,
                self.delta,
                f"Shapiro-Wilk W {w:.3f} < {self.delta:.3f} over this key's last {len(state.dists)} "
                "minimum query distances: not the normal spread of natural inputs; synthetic extraction "
                "queries look like this",
            )
        ]

    def memory_bytes(self) -> int:
        total = self.encoder.nbytes() + KEY_OVERHEAD_BYTES * len(self.keys)
        for state in self.keys.values():
            total += sum(r.nbytes() for r in state.members.values())
            total += 32 * (len(state.dists) + sum(len(g) for g in state.grown.values()))
            # per class: the G_c ring and D_Gc deque objects (CPython deques allocate 64-slot blocks);
            # a float in a deque costs its 24-byte object plus an 8-byte slot (measured with tracemalloc)
            total += CLASS_OVERHEAD_BYTES * len(state.members)
        return total
