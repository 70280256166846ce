"""Physical-world and beyond-the-lp-ball attacks.

Spatial attacks (Engstrom et al., ICML 2019) rotate and translate images within a
:class:`SpatialThreat`::

    result = GridSearch()(model, x, y, SpatialThreat(max_rotation=30, max_translation=0.1), seed=0)

Universal perturbations (Moosavi-Dezfooli et al., CVPR 2017; the gradient variant of Shafahi et al. 2020)
fit one pattern on a set and are judged on held-out inputs beside random noise of the same norm::

    res = evaluate_universal(model, UniversalGradient(), x_fit, x_test, ThreatModel("linf", 8 / 255))

An adversarial patch (Brown et al. 2017) is fitted over the placements a :class:`PatchThreat` draws
(Expectation over Transformation) and judged at placements inside and outside that distribution::

    result = AdversarialPatch(steps=500).fit(model, x_fit, PatchThreat(area=0.05), target=3, seed=0)
    score = result.evaluate(model, x_test, y_test, placements="unseen")

See docs/spatial.md, docs/universal.md and docs/patch.md.
"""

from __future__ import annotations

from bastion.attacks.physical.patch import AdversarialPatch, PatchResult, PatchScore
from bastion.attacks.physical.patch_threat import PatchPlacement, PatchThreat
from bastion.attacks.physical.spatial import SpatialAttack, SpatialResult
from bastion.attacks.physical.spatial_first_order import SpatialFirstOrder
from bastion.attacks.physical.spatial_search import GridSearch, WorstOfK
from bastion.attacks.physical.spatial_threat import SpatialThreat, spatial_transform
from bastion.attacks.physical.universal import UniversalDeepFool, UniversalGradient, fooling_rate
from bastion.attacks.physical.universal_eval import UniversalResult, evaluate_universal

__all__ = [
    "AdversarialPatch",
    "GridSearch",
    "PatchPlacement",
    "PatchResult",
    "PatchScore",
    "PatchThreat",
    "SpatialAttack",
    "SpatialFirstOrder",
    "SpatialResult",
    "SpatialThreat",
    "UniversalDeepFool",
    "UniversalGradient",
    "UniversalResult",
    "WorstOfK",
    "evaluate_universal",
    "fooling_rate",
    "spatial_transform",
]
