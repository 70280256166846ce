"""Has the data drifted? Per-feature KS tests (BH-corrected) plus an MMD test on model embeddings.

The two tests look for different things: the KS tests find *which* input coordinates moved (a
brighter image, a sensor offset), the MMD test on the model's penultimate embeddings finds a change in
what the model sees (a new class mix, a new style) even when no single pixel moves much. The verdict is
"drift" when either finds it. ``alpha`` is the false-alarm rate of that verdict: it is split evenly
(Bonferroni), the KS family gets ``alpha / 2`` as its false-discovery rate (Benjamini–Hochberg; with no
drift, BH also bounds the chance of any rejection by ``alpha / 2``) and the MMD test ``alpha / 2``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from bastion.data import Dataset
from bastion.errors import DataError
from bastion.model import Classifier
from bastion.provenance.ks import benjamini_hochberg, ks_p_values, ks_statistics
from bastion.provenance.mmd import mmd_test

__all__ = ["DriftReport", "FeatureDrift", "drift_test"]


@dataclass(frozen=True)
class FeatureDrift:
    """Feature ``index`` of the flattened input (``position`` (c, h, w) for images): its KS ``statistic``,
    raw ``p_value``, BH-adjusted ``q_value`` and its mean on each side."""

    index: int
    position: tuple[int, ...]
    statistic: float
    p_value: float
    q_value: float
    mean_reference: float
    mean_current: float


@dataclass(frozen=True)
class DriftReport:
    """The verdict (``drift``) and the evidence: KS over ``features_tested`` features (constant ones
    skipped), ``features_drifting`` with q < alpha / 2, the ``top_features`` by KS statistic, and the MMD
    test in ``mmd_space`` ("embeddings" or "inputs") on ``mmd_samples`` per side."""

    drift: bool
    alpha: float
    n_reference: int
    n_current: int
    ks_samples: tuple[int, int]
    features_tested: int
    features_skipped: int
    features_drifting: int
    top_features: tuple[FeatureDrift, ...]
    mmd2: float
    mmd_p_value: float
    mmd_bandwidth: float
    mmd_space: str
    mmd_samples: tuple[int, int]
    permutations: int
    seed: int

    @property
    def verdict(self) -> str:
        return "drift" if self.drift else "no drift"

    @property
    def ks_drift(self) -> bool:
        return self.features_drifting > 0

    @property
    def mmd_drift(self) -> bool:
        return self.mmd_p_value < self.alpha / 2

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, **asdict(self)}


def _subset(x: torch.Tensor, cap: int, generator: torch.Generator) -> torch.Tensor:
    if x.shape[0] <= cap:
        return x
    return x[torch.randperm(x.shape[0], generator=generator)[:cap].sort().values.to(x.device)]


def _check(
    reference: Dataset, current: Dataset, alpha: float, permutations: int, caps: dict[str, int]
) -> None:
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be a significance level in (0, 1), e.g. 0.05; got {alpha}")
    if 1.0 / (1 + permutations) >= alpha / 2:
        need = int(np.ceil(2 / alpha))
        raise DataError(
            f"{permutations} permutations can never give an MMD p-value below alpha/2 = {alpha / 2:g}; "
            f"use at least {need}"
        )
    for name, value in caps.items():
        if value < 2:
            raise DataError(f"{name} must be >= 2, got {value}")
    if reference.input_shape != current.input_shape:
        raise DataError(
            f"cannot compare {reference.name} {reference.input_shape} with {current.name} "
            f"{current.input_shape}: the samples must have the same shape"
        )
    if len(reference) < 2 or len(current) < 2:
        raise DataError(
            f"drift tests need at least 2 samples per side, got {len(reference)} and {len(current)}"
        )


def drift_test(
    reference: Dataset,
    current: Dataset,
    model: Classifier | torch.nn.Module | None = None,
    *,
    alpha: float = 0.05,
    max_features: int = 10,
    permutations: int = 200,
    max_samples: int = 10_000,
    mmd_samples: int = 1_000,
    seed: int = 0,
) -> DriftReport:
    """Compare ``current`` with ``reference`` (inputs (N, ...) of one shape); see the module docstring.

    KS runs on up to ``max_samples`` per side, MMD on up to ``mmd_samples`` per side (seeded random
    subsets). With a ``model`` (a PyTorch classifier) MMD compares its penultimate-layer embeddings
    (:func:`bastion.detect.activations.layer_activations`), otherwise the raw inputs. Labels are not used.
    ``max_features`` bounds the list of top features. Same seed, same report.
    """
    _check(reference, current, alpha, permutations, {"max_samples": max_samples, "mmd_samples": mmd_samples})
    g = torch.Generator().manual_seed(seed)
    a = _subset(reference.x, max_samples, g).flatten(1)
    b = _subset(current.x, max_samples, g).flatten(1)
    pooled_min = torch.minimum(a.amin(0), b.amin(0).to(a.device))
    pooled_max = torch.maximum(a.amax(0), b.amax(0).to(a.device))
    tested = torch.nonzero(pooled_max > pooled_min).flatten().cpu().numpy()  # constants cannot move
    stats = ks_statistics(a[:, tested], b[:, tested])
    q = benjamini_hochberg(ks_p := ks_p_values(stats, a.shape[0], b.shape[0]))
    top = np.argsort(-stats, kind="stable")[:max_features]
    mean_a, mean_b = a.double().mean(0).cpu(), b.double().mean(0).cpu()
    features = tuple(
        FeatureDrift(
            int(tested[k]),
            tuple(int(i) for i in np.unravel_index(int(tested[k]), reference.input_shape)),
            float(stats[k]),
            float(ks_p[k]),
            float(q[k]),
            float(mean_a[tested[k]]),
            float(mean_b[tested[k]]),
        )
        for k in top.tolist()
    )
    xa, xb = _subset(reference.x, mmd_samples, g), _subset(current.x, mmd_samples, g)
    if model is not None:
        from bastion.detect.activations import layer_activations

        xa, xb = layer_activations(model, xa), layer_activations(model, xb)
    mmd = mmd_test(xa.flatten(1), xb.flatten(1), permutations=permutations, generator=g)
    drifting = int((q < alpha / 2).sum())
    return DriftReport(
        drift=drifting > 0 or mmd.p_value < alpha / 2,
        alpha=alpha,
        n_reference=len(reference),
        n_current=len(current),
        ks_samples=(int(a.shape[0]), int(b.shape[0])),
        features_tested=int(tested.size),
        features_skipped=int(a.shape[1] - tested.size),
        features_drifting=drifting,
        top_features=features,
        mmd2=mmd.mmd2,
        mmd_p_value=mmd.p_value,
        mmd_bandwidth=mmd.bandwidth,
        mmd_space="embeddings" if model is not None else "inputs",
        mmd_samples=(int(xa.shape[0]), int(xb.shape[0])),
        permutations=permutations,
        seed=seed,
    )
