"""STRIP: flag trojaned inputs by how little their prediction changes under superimposition.

Gao, Xu, Wang, Chen, Ranasinghe & Nepal, "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks", ACSAC 2019.

A backdoor trigger dominates the prediction: superimpose a triggered input with clean images and the
model still answers the target class with confidence, so the entropy of its predictions stays low.
A clean input blended with another image gives mixed, high-entropy predictions. The score of ``x`` is
minus the mean prediction entropy over ``n_overlays`` superimposed copies, so higher = more suspicious,
as the :class:`~bastion.detect.base.Detector` contract wants. STRIP runs on the inputs alone, with no
knowledge of the trigger; it is a per-input, inference-time check.

``fpr`` is the *false-rejection rate* (FRR): the share of clean inputs flagged, fixed at ``fit`` on the
clean data exactly as Gao et al. set their entropy boundary from the clean entropy distribution.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bastion.detect.base import Detector, DetectorError
from bastion.model import Classifier
from bastion.threat import Bounds

__all__ = ["STRIP", "superimpose"]


def superimpose(x: torch.Tensor, overlays: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """Every input ``x`` (n, ...) with every overlay (k, ...) added on, as Gao et al. blend: (n, k, ...)
    ``clamp(x + (o - low), low, high)`` for ``bounds`` (low, high). Adding rather than averaging keeps a
    saturated trigger intact."""
    low, high = bounds
    return (x.unsqueeze(1) + (overlays.to(x.device, x.dtype).unsqueeze(0) - low)).clamp(low, high)


class STRIP(Detector):
    """Score (N,) = ``-mean_j H(softmax(f(blend(x, o_j))))`` over ``n_overlays`` clean images ``o_j``.

    - ``fit(model, clean_x)`` keeps a copy of ``clean_x`` (N, ...) as the overlay pool and draws the
      ``n_overlays`` overlays from it once (seeded by ``seed``, without replacement). Every input is
      blended with the same overlays, so an input's score does not depend on the batch it comes in
      and the same seed gives the same scores. An input equal to one of the overlays (a pool image
      during calibration) skips that overlay: an image blended with itself is just a brighter image
      and would look falsely confident.
    - Blend (Gao et al.'s ``addWeighted(x, 1, o, 1)`` on saturating pixels): ``clamp(x + (o - low),
      low, high)`` for bounds ``(low, high)``. Adding rather than averaging keeps a saturated
      trigger (a white patch) intact, which is what makes triggered inputs stand out; a weighted
      average would halve the trigger and let a weak backdoor hide.
    - ``n_overlays`` trades cost for a steadier score (its noise falls as 1/sqrt(n_overlays)): one
      forward pass per overlay and input. 64 separates a BadNets patch on digits completely; 16
      already does, with a noisier threshold (a held-out FRR a few points off ``fpr``).
    - ``batch_size`` inputs are blended and scored at once: ``batch_size * n_overlays`` per forward.
    """

    name: ClassVar[str] = "strip"

    def __init__(
        self, n_overlays: int = 64, *, seed: int = 0, fpr: float = 0.05, batch_size: int = 64
    ) -> None:
        super().__init__(fpr=fpr, batch_size=batch_size)
        if not isinstance(n_overlays, int) or isinstance(n_overlays, bool) or n_overlays < 2:
            raise DetectorError(
                f"n_overlays must be an integer >= 2 (Gao et al. use 100), got {n_overlays!r}"
            )
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise DetectorError(f"seed must be an integer, got {seed!r}")
        self.n_overlays = n_overlays
        self.seed = seed
        self._overlays: torch.Tensor | None = None

    @property
    def overlays(self) -> torch.Tensor:
        """The clean images (n_overlays, ...) every input is blended with; set by ``fit``."""
        if self._overlays is None:
            raise DetectorError("STRIP is not fitted: call .fit(model, clean_x) with clean inputs first")
        return self._overlays

    def _prepare(self, model: Classifier, clean_x: torch.Tensor) -> None:
        n = int(clean_x.shape[0])
        if n < self.n_overlays:
            raise DetectorError(
                f"STRIP needs at least n_overlays={self.n_overlays} clean inputs to draw overlays from, "
                f"got {n}; pass more clean data or lower n_overlays"
            )
        g = torch.Generator().manual_seed(self.seed)
        pick = torch.randperm(n, generator=g)[: self.n_overlays].to(clean_x.device)
        # A copy: the caller may reuse (or overwrite) its tensor after fit.
        self._overlays = clean_x[pick].detach().clone()

    def _score(self, model: Classifier, x: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        overlays = self.overlays.to(device=x.device, dtype=x.dtype)
        n, k = x.shape[0], overlays.shape[0]
        blended = superimpose(x, overlays, model.bounds)  # one forward over n * k inputs
        log_p = torch.log_softmax(model(blended.flatten(0, 1)), dim=1).view(n, k, -1)
        entropy = -(log_p.exp() * log_p).sum(dim=2)
        keep = (x.flatten(1).unsqueeze(1) != overlays.flatten(1).unsqueeze(0)).any(dim=2).to(x.dtype)
        # keep.sum >= k - 1 >= 1 unless the pool holds duplicates; clamp guards that corner anyway.
        return -(entropy * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)

    def __repr__(self) -> str:
        return f"STRIP(n_overlays={self.n_overlays}, seed={self.seed}, fpr={self.fpr})"
