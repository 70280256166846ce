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

Measured (BadNets patch, target 0, 5% / 10% of the other images poisoned): MNIST (mnist-cnn, 20,000
images), penultimate layer: separation 6.0 / 5.8 against at most 3.8 for clean classes, borderline;
its convolutional features: 4.7, missed. Digits (digits-cnn): penultimate 4.1 to 4.9, missed (class
1's writing style reaches 6.0); pooled convolutional features (``layer="5"``): 8.5 to 10.3, every
poisoned sample flagged and no clean one, clean classes at most 5.1. Activation clustering looks in
ten directions and is the more sensitive scanner; spectral signatures the more conservative one.
"""

from __future__ import annotations

import torch

from bastion.detect.split_scan import SplitScanner, principal_axes

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
    """Per class: top singular vector of the centred activations, signed projection, best 2-group cut.

    ``SpectralSignatures(layer="penultimate", min_separation=5.5).scan(model, train_set)``.
    Scores are projections in clean-group standard deviations (see :class:`SplitScanner`). One direction
    sees less than activation clustering's several: prefer it when the poison dominates the top
    direction (convolutional feature maps, e.g. ``layer="5"`` of the zoo's digits CNN).
    """

    method = "spectral"
    default_separation = 5.5

    def _split(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        axes = principal_axes(x, 1, generator)
        if axes.shape[1] == 0:  # every sample has the same activations: nothing to split
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device), torch.zeros(
                x.shape[0], dtype=torch.bool, device=x.device
            )
        p = x @ axes[:, 0]
        return p, best_cut(p)
