"""Model extraction: rebuild a black-box classifier from its answers, and measure the clone.

- :class:`KnockoffNets` (Orekondy et al. 2019): query a natural pool unlike the victim's data, chosen at
  random, by the paper's gradient bandit (``adaptive``) or by the clone's uncertainty (``uncertainty``,
  Pal et al. 2020's active learning, the strongest).
- :class:`JacobianAugmentation` (Papernot et al. 2017): a substitute grown from a small seed set along its
  own Jacobian.

Both subclass :class:`ExtractionAttack` (which owns the budget, the oracle and the curve) and return an
:class:`ExtractionResult` (the clone, its queries, accuracy and fidelity against the query
budget); :func:`fidelity` and :func:`transfer_rate` measure a clone against its victim.
"""

from __future__ import annotations

from bastion.attacks.extraction._training import CloneTraining
from bastion.attacks.extraction.base import ExtractionAttack
from bastion.attacks.extraction.clone import (
    CurvePoint,
    ExtractionResult,
    TransferResult,
    fidelity,
    load_clone,
    small_cnn,
    transfer_rate,
)
from bastion.attacks.extraction.jacobian import JacobianAugmentation
from bastion.attacks.extraction.knockoff import DEFAULT_BUDGETS, KnockoffNets

__all__ = [
    "DEFAULT_BUDGETS",
    "CloneTraining",
    "CurvePoint",
    "ExtractionAttack",
    "ExtractionResult",
    "JacobianAugmentation",
    "KnockoffNets",
    "TransferResult",
    "fidelity",
    "load_clone",
    "small_cnn",
    "transfer_rate",
]
