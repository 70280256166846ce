"""Two-sample Kolmogorov–Smirnov tests on every feature at once, with Benjamini–Hochberg correction.

The statistic is exact (integer arithmetic on the pooled, sorted sample; ties handled as in
``scipy.stats.ks_2samp``); p-values are scipy's asymptotic ones (``kstwo.sf(D, round(n1 n2 / (n1 + n2)))``,
what ``ks_2samp(method="asymp")`` returns). With discrete data (pixels, counts) they are conservative.
"""

from __future__ import annotations

import numpy as np
import torch

from bastion.errors import DataError

__all__ = ["benjamini_hochberg", "ks_p_values", "ks_statistics"]

_CHUNK_ELEMENTS = 1 << 22  # pooled values sorted at once: bounds memory to ~100 MB whatever D is


def _sort_keys(x: np.ndarray, tag: int) -> np.ndarray:
    """(D, n) int64 keys that sort like the float32 values of ``x`` (n, D), with ``tag`` in the low bit."""
    bits = (x.T + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0: equal values, equal keys
    # IEEE floats sort like integers once negatives are bit-flipped and positives get the sign bit set.
    ordered = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.int64)
    return (ordered << 1) | tag


def ks_statistics(reference: torch.Tensor, current: torch.Tensor) -> np.ndarray:
    """KS statistics (D,) float64: ``sup_t |F_ref(t) - F_cur(t)|`` per column of (n1, D) and (n2, D).

    Computed on the CPU in float32 from one sort of the pooled values per feature: every value carries
    its side in the low bit of an integer key, so no argsort or gather is needed.
    """
    if reference.dim() != 2 or current.dim() != 2 or reference.shape[1] != current.shape[1]:
        raise DataError(
            f"KS needs (n1, D) and (n2, D) with the same D, got {tuple(reference.shape)} and "
            f"{tuple(current.shape)}"
        )
    n1, n2 = reference.shape[0], current.shape[0]
    if n1 == 0 or n2 == 0:
        raise DataError("KS needs at least one sample on each side")
    if reference.shape[1] == 0:
        return np.empty(0)
    a = reference.detach().to("cpu", torch.float32).numpy()
    b = current.detach().to("cpu", torch.float32).numpy()
    step = max(1, _CHUNK_ELEMENTS // (n1 + n2))
    out = []
    for lo in range(0, a.shape[1], step):
        keys = np.concatenate([_sort_keys(a[:, lo : lo + step], 0), _sort_keys(b[:, lo : lo + step], 1)], 1)
        keys.sort(axis=1)
        # F_ref - F_cur jumps by +1/n1 at a reference value and -1/n2 at a current one; scaled by n1 n2
        # the jumps are the integers n2 and -n1, so the running sum is exact.
        gap = np.abs(np.cumsum(np.where(keys & 1, -n1, n2), axis=1))
        values = keys >> 1
        # Only where a run of tied values ends is the ECDF difference attained.
        run_end = np.ones(values.shape, dtype=bool)
        run_end[:, :-1] = values[:, 1:] != values[:, :-1]
        out.append((gap * run_end).max(axis=1))
    return np.concatenate(out) / (n1 * n2)


def ks_p_values(statistics: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """Two-sided asymptotic p-values for KS statistics from samples of sizes ``n1`` and ``n2``."""
    from scipy.stats import kstwo

    d = np.asarray(statistics, dtype=np.float64)
    en = round(n1 * n2 / (n1 + n2))
    return np.clip(kstwo.sf(d, en), 0.0, 1.0)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (same order): reject where ``adjusted <= q`` for false-discovery rate ``q``.

    Benjamini & Hochberg (1995). Valid under independence and positive dependence (PRDS); when no
    feature drifts it also bounds the chance of any rejection by ``q``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    k = p.size
    if k == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * k / np.arange(1, k + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(k)
    out[order] = np.minimum(adjusted, 1.0)
    return out
