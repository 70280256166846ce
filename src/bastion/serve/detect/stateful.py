"""Stateful detection of query-based evasion: near-duplicate query sequences from one key.

Chen, Carlini, Wagner, "Stateful Detection of Black-Box Adversarial Examples", AISec 2020
(arXiv:1907.05587). Query-based attacks (Square, HopSkipJump, boundary and gradient-estimation
attacks) probe many tiny variations of one input; benign users rarely send two near-identical inputs.
Each key keeps a buffer of its last ``history`` queries, encoded; every new query's score is the mean
distance to its ``k`` nearest buffered queries, and a score below ``threshold`` flags the key. As in the
paper the buffer is cleared after a detection, so a persistent attacker is flagged again and again
(each flag then counts one more attack attempt) and one flag does not poison the next requests.

The encoder here is :class:`~bastion.serve.detect._base.Encoder` (root-mean-square pixel units, a
seeded random projection above ``dim`` features) instead of the paper's learned similarity encoder:
it needs no training and still sees the pixel-space near-duplicates these attacks send, but an
attacker who adds large random transformations between queries (the paper's adaptive attack) can
spread its queries beyond the threshold at the cost of many more queries.

``threshold`` comes from benign data (:meth:`StatefulDetector.calibrate`): ``margin`` times the
``percentile`` of the k-NN scores of a benign stream pushed through one key. The paper stops at the
0.1th percentile (0.1% of benign queries flagged); at a gateway's volume that is ten false alarms per
10,000 benign queries, so the default ``margin`` 0.5 halves it: near-duplicate probing scores about
ten times lower than natural inputs, so the halving costs no detections on bastion's attacks.
"""

from __future__ import annotations

import numpy as np
import torch

from bastion.errors import GatewayError
from bastion.serve.detect._base import KEY_OVERHEAD_BYTES, Encoder, Flag, KeyStates, Ring, check_positive_int

__all__ = ["DEFAULT_THRESHOLD", "StatefulDetector"]

# Root-mean-square pixel distance: what calibrate() gives with its defaults on the digits training
# split (0.5 x 0.154) and on 5,000 MNIST training images (0.5 x 0.139), rounded down. The lowest benign
# score seen on the test splits was 0.16 (digits) and 0.097 (MNIST, which holds near-duplicate digits);
# Square and HopSkipJump on one image score 0.01-0.04. Calibrate for other data.
DEFAULT_THRESHOLD = 0.07


class StatefulDetector:
    """Per-key k-nearest-neighbour distance of each query to the key's recent queries."""

    name = "stateful"

    def __init__(
        self,
        *,
        k: int = 10,
        history: int = 100,
        threshold: float = DEFAULT_THRESHOLD,
        dim: int = 64,
        max_keys: int = 2000,
        seed: int = 0,
    ) -> None:
        self.k = check_positive_int("k", k)
        self.history = check_positive_int("history", history)
        if self.history < self.k:
            raise GatewayError(f"history ({history}) must hold at least k ({k}) queries; raise history")
        if not threshold > 0:
            raise GatewayError(f"threshold must be a distance > 0, got {threshold}; calibrate on benign data")
        self.threshold = float(threshold)
        self.encoder = Encoder(dim, seed)
        self.keys: KeyStates[Ring] = KeyStates(lambda: Ring(self.history), max_keys)

    def calibrate(
        self, benign_x: torch.Tensor, *, percentile: float = 0.1, margin: float = 0.5, seed: int = 0
    ) -> StatefulDetector:
        """Set ``threshold`` to ``margin`` times the ``percentile`` (in %) of the scores of ``benign_x``
        sent in a seeded random order by one key (no flags, no clearing). Returns self."""
        if not 0.0 <= percentile < 100.0:
            raise GatewayError(f"percentile is in [0, 100), got {percentile}; the paper uses 0.1")
        if not 0.0 < margin <= 1.0:
            raise GatewayError(f"margin scales the benign percentile down and is in (0, 1], got {margin}")
        order = torch.randperm(benign_x.shape[0], generator=torch.Generator().manual_seed(seed))
        scores = self.scores(self.encoder(benign_x[order]))
        if scores.size == 0:
            raise GatewayError(f"calibration needs more than k={self.k} inputs, got {benign_x.shape[0]}")
        self.threshold = margin * float(np.percentile(scores, percentile))
        return self

    def scores(self, codes: torch.Tensor) -> np.ndarray:
        """The k-NN scores of one key sending ``codes`` in order (each once the buffer holds k)."""
        ring, out = Ring(self.history), []
        for row in codes:
            if ring.count >= self.k:
                out.append(self._knn(ring, row))
            ring.append(row)
        return np.asarray(out, dtype=np.float64)

    def _knn(self, ring: Ring, row: torch.Tensor) -> float:
        dist = torch.linalg.vector_norm(ring.rows() - row, dim=1)
        return float(torch.topk(dist, self.k, largest=False).values.mean())

    def observe(self, key_id: str, x: torch.Tensor, released: torch.Tensor) -> list[Flag]:
        ring = self.keys.get(key_id)
        lowest, hits = float("inf"), 0
        for row in self.encoder(x):
            if ring.count >= self.k:
                score = self._knn(ring, row)
                if score < self.threshold:
                    hits += 1
                    lowest = min(lowest, score)
                    ring.clear()
            ring.append(row)
        if not hits:
            return []
        return [
            Flag(
                self.name,
                lowest,
                self.threshold,
                f"{hits} of {x.shape[0]} queries within {lowest:.4f} (mean of {self.k} nearest) of this "
                f"key's recent queries, below {self.threshold:.4f}: near-duplicate probing as query-based "
                "attacks send",
            )
        ]

    def memory_bytes(self) -> int:
        rings = sum(r.nbytes() for r in self.keys.values())
        return rings + KEY_OVERHEAD_BYTES * len(self.keys) + self.encoder.nbytes()
