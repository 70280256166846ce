"""The two tests randomized smoothing rests on, on counts of noisy predictions (vectorised over inputs).

Exact binomial statistics from scipy; they run once per input, after the model has done its work.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

__all__ = ["binomial_p_value", "clopper_pearson_lower"]


def clopper_pearson_lower(successes: torch.Tensor, trials: int, alpha: float) -> torch.Tensor:
    """One-sided (1 - alpha) Clopper–Pearson lower confidence bound on a binomial proportion.

    ``successes`` (N,) integer counts out of ``trials``; returns (N,) float64 bounds in [0, 1]
    (0 where there are no successes). This is the quantile ``Beta(alpha; k, n - k + 1)``.
    """
    k = successes.detach().cpu().numpy().astype(np.float64)
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(alpha, k, trials - k + 1)
    return torch.from_numpy(np.where(k > 0, bound, 0.0))


def binomial_p_value(top: torch.Tensor, runner_up: torch.Tensor) -> torch.Tensor:
    """Two-sided exact binomial test of ``top`` successes in ``top + runner_up`` trials against p = 1/2.

    (N,) float64 p-values; Cohen et al.'s PREDICT abstains unless it is at most alpha.
    """
    a = top.detach().cpu().numpy().astype(np.int64)
    b = runner_up.detach().cpu().numpy().astype(np.int64)
    n = a + b
    # Two-sided test of a symmetric binomial: twice the smaller tail, capped at 1.
    tail = stats.binom.cdf(np.minimum(a, b), n, 0.5)
    return torch.from_numpy(np.minimum(1.0, 2.0 * tail))
