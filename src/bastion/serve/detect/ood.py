"""Out-of-distribution rate per key: catches extraction from a natural pool (Knockoff Nets).

Knockoff Nets (Orekondy et al., CVPR 2019) query a pool of natural images unlike the victim's data
(Fashion-MNIST against a digit model): their minimum distances look natural, so PRADA passes them,
but most of them are out of the distribution the model serves. Each query is marked
out-of-distribution (OOD) when

- its input lies far from the benign data's principal subspace: the residual norm after projecting on
  the top ``components`` principal components of benign inputs exceeds its benign ``quantile``, or
- (``use_confidence``) the top released probability falls below its benign ``1 - quantile`` quantile
  (Hendrycks & Gimpel's max-softmax baseline; silent when the key gets labels only).

A key is flagged when the OOD count among its last ``window`` queries is improbably high for benign
traffic: at least the smallest m with P(Binomial(n, p0) >= m) <= ``alpha``, n the queries in the window
(at least ``min_queries``) and p0 the OOD rate measured on a held-out half of the calibration data (not
the half the subspace and quantiles were fitted on, so p0 is honest about fitting error).

What it misses: an attacker whose pool resembles the served data (in-distribution queries, e.g. the
victim's own test set) extracts unflagged; queries spread over many keys dilute each window.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from scipy import stats

from bastion.errors import GatewayError
from bastion.serve.detect._base import KEY_OVERHEAD_BYTES, Flag, KeyStates, check_positive_int

__all__ = ["OODRateDetector"]


class OODRateDetector:
    """Share of a key's recent queries that look out-of-distribution; needs :meth:`calibrate`."""

    name = "ood"

    def __init__(
        self,
        *,
        window: int = 100,
        min_queries: int = 20,
        quantile: float = 0.99,
        alpha: float = 1e-6,
        components: int = 32,
        use_confidence: bool = True,
        max_keys: int = 10_000,
        seed: int = 0,
    ) -> None:
        self.window = check_positive_int("window", window)
        self.min_queries = min(check_positive_int("min_queries", min_queries), self.window)
        if not 0.5 < quantile < 1.0:
            raise GatewayError(f"quantile is a benign share in (0.5, 1), got {quantile}; 0.99 is usual")
        if not 0.0 < alpha < 1.0:
            raise GatewayError(f"alpha is a false-alarm probability per window in (0, 1), got {alpha}")
        self.quantile, self.alpha = float(quantile), float(alpha)
        self.components = check_positive_int("components", components)
        self.use_confidence = use_confidence
        self.seed = seed
        self.keys: KeyStates[deque[bool]] = KeyStates(lambda: deque(maxlen=self.window), max_keys)
        self._mean: torch.Tensor | None = None
        self._basis: torch.Tensor | None = None
        self.residual_threshold = float("inf")
        self.confidence_threshold = 0.0
        self.benign_rate: float | None = None
        self._needed = np.zeros(0, dtype=np.int64)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean is None or self._basis is None:
            raise GatewayError(
                "OODRateDetector is not calibrated; call calibrate(benign_x, benign_released) first"
            )
        flat = x.detach().reshape(x.shape[0], -1).to(device="cpu", dtype=torch.float32) - self._mean
        return torch.linalg.vector_norm(flat - (flat @ self._basis) @ self._basis.T, dim=1)

    def _ood(self, x: torch.Tensor, released: torch.Tensor | None) -> torch.Tensor:
        out = self._residual(x) > self.residual_threshold
        if self.use_confidence and released is not None:
            out |= (
                released.detach().to(device="cpu", dtype=torch.float32).max(dim=1).values
                < self.confidence_threshold
            )
        return out

    def calibrate(
        self, benign_x: torch.Tensor, benign_released: torch.Tensor | None = None
    ) -> OODRateDetector:
        """Fit the subspace and quantiles on a seeded half of ``benign_x`` (and of its released
        probabilities, for the confidence test), measure the OOD rate p0 on the other half. Returns self."""
        n = benign_x.shape[0]
        if n < 2 * self.components:
            raise GatewayError(f"calibration needs at least {2 * self.components} benign inputs, got {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        fit, held = order[: n // 2], order[n // 2 :]
        flat = benign_x[fit].detach().reshape(len(fit), -1).to(device="cpu", dtype=torch.float32)
        self._mean = flat.mean(dim=0)
        k = min(self.components, flat.shape[1], len(fit))
        self._basis = torch.linalg.svd(flat - self._mean, full_matrices=False).Vh[:k].T.contiguous()
        self.residual_threshold = float(torch.quantile(self._residual(benign_x[fit]), self.quantile))
        if self.use_confidence and benign_released is not None:
            top = benign_released[fit].detach().to(device="cpu", dtype=torch.float32).max(dim=1).values
            self.confidence_threshold = float(torch.quantile(top, 1.0 - self.quantile))
        held_released = None if benign_released is None else benign_released[held]
        # never below the nominal rate: a lucky held-out half must not make the test trigger-happy
        self.benign_rate = max(
            float(self._ood(benign_x[held], held_released).float().mean()), 1.0 - self.quantile
        )
        counts = np.arange(self.window + 1)
        # needed[n] = smallest m with P(X >= m) <= alpha for X ~ Binomial(n, p0); isf gives the
        # largest m' with P(X > m') > alpha, hence + 1
        self._needed = (stats.binom.isf(self.alpha, counts, self.benign_rate) + 1).astype(np.int64)
        return self

    def observe(self, key_id: str, x: torch.Tensor, released: torch.Tensor) -> list[Flag]:
        marks = self._ood(x, released).tolist()
        recent = self.keys.get(key_id)
        recent.extend(bool(m) for m in marks)
        n = len(recent)
        if n < self.min_queries:
            return []
        count, needed = sum(recent), int(self._needed[n])
        if count < needed:
            return []
        return [
            Flag(
                self.name,
                count / n,
                needed / n,
                f"{count} of this key's last {n} queries look out-of-distribution (benign rate "
                f"{self.benign_rate:.3f}, at most {needed - 1} expected): natural-pool extraction such as "
                "Knockoff queries like this",
            )
        ]

    def memory_bytes(self) -> int:
        fixed = (
            0 if self._basis is None or self._mean is None else 4 * (self._basis.numel() + self._mean.numel())
        )
        # a deque of bools holds 8-byte pointers to the two shared bool objects, in 64-slot blocks
        per_key = KEY_OVERHEAD_BYTES + 8 * (self.window + 64)
        return fixed + 8 * len(self._needed) + per_key * len(self.keys)
