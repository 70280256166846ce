"""Search attacks in the space of rotations and translations (Engstrom et al., ICML 2019): worst-of-k
random transforms per input, and the paper's exhaustive grid over the threat's ranges. Both keep, per
input, a transform that fools the model if any candidate does (:func:`bastion.attacks.physical.spatial.pick`).
"""

from __future__ import annotations

import torch

from bastion.attacks.base import check_positive
from bastion.attacks.physical.spatial import SpatialAttack, pick
from bastion.attacks.physical.spatial_threat import SpatialThreat
from bastion.model import Classifier

__all__ = ["GridSearch", "WorstOfK"]


class WorstOfK(SpatialAttack):
    """Draw ``k`` transforms uniformly in the ranges per input; keep the worst (Engstrom et al., Sec. 3)."""

    name = "worst_of_k"

    def __init__(self, k: int = 10, *, batch_size: int = 2048) -> None:
        super().__init__(batch_size=batch_size)
        check_positive("k", k, integer=True)
        self.k = int(k)

    def _search(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: SpatialThreat,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        n = x.shape[0]
        candidates = threat.sample(n * self.k, generator, device=x.device).to(x.dtype).view(n, self.k, 3)
        return pick(candidates, *self._score(model, x, y, candidates, threat.bounds))


class GridSearch(SpatialAttack):
    """The exhaustive grid: ``angles`` evenly spaced angles times ``translations`` squared translations
    over the ranges (the paper's 31 x 5 x 5 = 775 transforms); keep the worst. ``queries`` = n x grid size."""

    name = "grid_search"

    def __init__(self, angles: int = 31, translations: int = 5, *, batch_size: int = 2048) -> None:
        super().__init__(batch_size=batch_size)
        check_positive("angles", angles, integer=True)
        check_positive("translations", translations, integer=True)
        self.angles = int(angles)
        self.translations = int(translations)

    def grid(self, threat: SpatialThreat, *, device: torch.device | None = None) -> torch.Tensor:
        """The (angles * translations**2, 3) grid points; a single point per axis sits at 0."""

        def axis(limit: float, count: int) -> torch.Tensor:
            return (
                torch.linspace(-limit, limit, count, device=device)
                if count > 1
                else torch.zeros(1, device=device)
            )

        a = axis(threat.max_rotation, self.angles)
        t = axis(threat.max_translation, self.translations)
        return torch.cartesian_prod(a, t, t)

    def _search(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: SpatialThreat,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        grid = self.grid(threat, device=x.device).to(x.dtype)
        candidates = grid.unsqueeze(0).expand(x.shape[0], -1, -1)
        return pick(candidates, *self._score(model, x, y, candidates, threat.bounds))
