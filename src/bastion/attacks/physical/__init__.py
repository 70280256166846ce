"""Physical-world and beyond-the-lp-ball attacks.

Spatial attacks (Engstrom et al., ICML 2019) rotate and translate images within a
:class:`SpatialThreat`::

    result = GridSearch()(model, x, y, SpatialThreat(max_rotation=30, max_translation=0.1), seed=0)

See docs/spatial.md.
"""

from __future__ import annotations

from bastion.attacks.physical.spatial import (
    GridSearch,
    SpatialAttack,
    SpatialFirstOrder,
    SpatialResult,
    WorstOfK,
)
from bastion.attacks.physical.spatial_threat import SpatialThreat, spatial_transform

__all__ = [
    "GridSearch",
    "SpatialAttack",
    "SpatialFirstOrder",
    "SpatialResult",
    "SpatialThreat",
    "WorstOfK",
    "spatial_transform",
]
