"""Spectral signatures (Tran, Li & Madry, NeurIPS 2018, "Spectral Signatures in Backdoor Attacks").

A backdoor leaves its poisoned samples a shared feature the clean samples of the target class lack, so
within that class the mean difference between the two groups dominates the covariance of the learned
representation: the top singular vector of the centred activations points from the clean samples to
the poisoned ones. Tran et al. score each sample by its squared projection on that vector and remove
the top 1.5·ε of *every* class, which removes clean samples of every clean class too.

Here the projection is kept signed and split where a two-group split along it fits best (exact 1-D
2-means); the class is tested by how far apart the groups lie (:class:`~bastion.detect.split_scan.
SplitScanner`; default 5.5 SD: one direction gives a Gaussian class's best split about 2.7 SD, at
most 3.5 in small classes). The squared score cannot rank a large poison share: with the poison near
half of its class both groups lie equally far from the mean (measured on digits, 47% poison in class
0: area under the ROC curve 0.6 for the squared projection, 0.95 for the signed one).

**Whitening.** The raw top direction is the direction of largest *variance*, and in a max-pooling
network the class's own variation (writing style) can outweigh what the poison adds, π(1-π)·|shift|²
(smallest when the poison is a few percent of the class, and never more than |shift|²/4). Measured on
a LeNet with max-pooling (MNIST, a 5x5 "X" top-left on half of class 3, the groups 59 SD apart along
Fisher's discriminant in the pooled convolutional features): the top direction mixes the shift with the
class's style and the best cut along it lies 3.3-3.8 SD apart, within the clean classes' range
(2.8-3.8): the test never fires, at any layer. So each class is first whitened by the covariance of
the *other* classes' activations (each centred on its own class mean; a ridge of ``ridge`` times their
mean variance bounds the gain along directions they never use): the top direction is then the one where
this class varies most *compared with how the representation varies in data the poison does not touch*
(the top generalised eigenvector of the pair), and the statistic no longer depends on the features'
units or their anisotropy (invariant to scaling and rotating them). Same LeNet: 16 to 20 SD on the
convolutional features (every poisoned sample flagged, none clean), clean classes at most 4.6. The
test along one unfitted direction keeps its null: a Gaussian class's projection is Gaussian whichever
direction second moments pick, so the 5.5 threshold is unchanged. ``whiten=False`` restores the raw top
direction (and one class alone, with nothing to compare with, gets it too).

**Layer.** On that LeNet the penultimate layer (after two fully connected layers) has merged the poison
into class 3 (Fisher's discriminant with the truth: 9 SD; whitened spectral 4.5, activation clustering
6.3, whitened too: both miss); the first fully connected layer's input (``layer="features"``) keeps
the trigger as a feature of its own. See docs/poisoning.md for the grid over architectures, triggers
and poison shares.
"""

from __future__ import annotations

import torch

from bastion.detect.activations import PENULTIMATE
from bastion.detect.data_scan import check_count
from bastion.detect.split_scan import Reference, SplitScanner, check_ridge, principal_axes, whitened
from bastion.errors import DetectorError

__all__ = ["SpectralSignatures", "best_cut"]


def best_cut(p: torch.Tensor) -> torch.Tensor:
    """The exact 1-D 2-means split of ``p`` (n,), n >= 4: the smaller group (n,) bool.

    Sorting makes every candidate split a prefix; prefix sums give each split's within-group sum of
    squares in one vectorised pass. Each group keeps at least two samples.
    """
    values, order = p.sort()
    n = values.numel()
    total, total_sq = values.sum(), values.square().sum()
    left = torch.arange(2, n - 1, device=p.device, dtype=p.dtype)  # size of the lower group
    s1, q1 = values.cumsum(0)[1 : n - 2], values.square().cumsum(0)[1 : n - 2]
    sse = (q1 - s1.square() / left) + ((total_sq - q1) - (total - s1).square() / (n - left))
    k = int(left[int(sse.argmin())])
    lower = torch.zeros(n, dtype=torch.bool, device=p.device)
    lower[order[:k]] = True
    return lower if k <= n - k else ~lower


class SpectralSignatures(SplitScanner):
    """Per class: top direction of the activations whitened by the other classes' spread, signed
    projection, best 2-group cut, separation test.

    ``SpectralSignatures(layer="penultimate", dims=64, ridge=0.01, min_separation=5.5).scan(model, data)``.

    - ``dims``: the class's top principal directions searched (at most n // 10 for a class of n: the
      reference covariance is estimated, and the class's own subspace is where a poison adds variance).
    - ``ridge``: added to the reference covariance as a share of its mean variance, so that a direction
      the other classes never use (a unit dead outside this class) is amplified at most 1/ridge-fold in
      variance instead of without bound. ``whiten=False`` gives Tran et al.'s plain top direction.

    Scores are projections in clean-group standard deviations (see :class:`SplitScanner`).
    """

    method = "spectral"
    default_separation = 5.5

    def __init__(
        self,
        *,
        dims: int = 64,
        ridge: float = 0.01,
        whiten: bool = True,
        layer: str = PENULTIMATE,
        min_separation: float | None = None,
        seed: int = 0,
        min_class_size: int = 20,
        batch_size: int = 512,
        persistence_overlays: int = 16,
        persistence_ratio: float = 3.0,
    ) -> None:
        super().__init__(
            layer=layer,
            min_separation=min_separation,
            seed=seed,
            min_class_size=min_class_size,
            batch_size=batch_size,
            persistence_overlays=persistence_overlays,
            persistence_ratio=persistence_ratio,
        )
        self.dims = check_count("dims", dims, 1)
        if not isinstance(whiten, bool):
            raise DetectorError(f"whiten must be True or False, got {whiten!r}")
        self.ridge = check_ridge(ridge)
        self.whiten = whiten

    def _split(
        self, x: torch.Tensor, generator: torch.Generator, reference: Reference
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        if self.whiten:
            # Top direction of the class covariance S relative to the reference R (S v = λ R v): the top
            # principal direction once the class is whitened by R.
            w = whitened(x, reference, min(self.dims, max(1, n // 10)), self.ridge, generator)
        else:
            w = x
        axes = principal_axes(w, 1, generator) if w.shape[1] else w.new_zeros(0, 0)
        if axes.shape[1] == 0:  # every sample has the same activations: nothing to split
            none = torch.zeros(n, dtype=torch.bool, device=x.device)
            return torch.zeros(n, dtype=x.dtype, device=x.device), none
        p = w @ axes[:, 0]
        return p, best_cut(p)
