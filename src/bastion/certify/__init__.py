"""Certified robustness: guarantees that no attack inside a radius changes the prediction.

- :class:`RandomizedSmoothing` (l2, any classifier, probabilistic certificate; Cohen et al. 2019);
- :class:`DerandomizedSmoothing` (adversarial patches, deterministic, any base network trained on
  ablated bands; Levine & Feizi 2020), with :func:`train_ablated`;
- :class:`IntervalBoundPropagation` (linf, feed-forward PyTorch networks, deterministic; Gowal et al.
  2018), with :func:`interval_bounds` / :func:`margin_lower_bounds` for training, and
  :class:`Normalize`, the input normalisation layer IBP follows exactly.

All return a :class:`bastion.results.CertificationResult`.
"""

from bastion.certify.derandomized import Ablation, DerandomizedSmoothing, train_ablated
from bastion.certify.ibp import (
    IntervalBoundPropagation,
    interval_bounds,
    margin_lower_bounds,
    supported_layers,
)
from bastion.certify.normalize import Normalize
from bastion.certify.smoothing import ABSTAIN, RandomizedSmoothing
from bastion.results import STANDARD_RADII, CertificationResult

__all__ = [
    "ABSTAIN",
    "Ablation",
    "DerandomizedSmoothing",
    "STANDARD_RADII",
    "CertificationResult",
    "IntervalBoundPropagation",
    "Normalize",
    "RandomizedSmoothing",
    "interval_bounds",
    "margin_lower_bounds",
    "supported_layers",
    "train_ablated",
]
