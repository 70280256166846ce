"""Per-key attack detection for the gateway: each detector sees every answered request of a key
(``observe(key_id, x, released) -> list[Flag]``) and keeps bounded state (``memory_bytes()``).

- :class:`PRADA` (Juuti et al. 2019): extraction with synthetic queries (Jacobian augmentation).
- :class:`StatefulDetector` (Chen, Carlini, Wagner 2019): query-based evasion probing (Square,
  HopSkipJump): near-duplicate queries.
- :class:`OODRateDetector`: extraction from a natural pool (Knockoff Nets): a high share of
  out-of-distribution queries.
"""

from __future__ import annotations

from bastion.serve.detect._base import Flag, QueryDetector
from bastion.serve.detect.ood import OODRateDetector
from bastion.serve.detect.prada import PRADA
from bastion.serve.detect.stateful import StatefulDetector

__all__ = ["PRADA", "Flag", "OODRateDetector", "QueryDetector", "StatefulDetector"]
