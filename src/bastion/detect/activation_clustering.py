"""Activation clustering (Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural Networks by
Activation Clustering", arXiv:1811.03728).

A model trained on backdoored data classifies the poisoned samples as the target class for a different
reason (the trigger) than the clean ones, so in its late activations the target class falls into two
clusters. Chen et al. reduce each class's activations to 10 independent components (FastICA), split
them with 2-means and call the smaller cluster poisoned when it is small or well separated.

Two choices differ here, both for clean data's sake:

- The clusters are Gaussians with one shared covariance (hard EM, i.e. 2-means in the Mahalanobis
  metric of the pooled within-cluster covariance), started from seeded 2-means++ runs and the split of
  the top principal component; the best fit by classification likelihood wins. This model is
  invariant to any invertible linear map of the reduced space, so PCA gives the same clusters FastICA
  would: ICA is whitened PCA followed by a rotation. Plain 2-means on whitened components follows the
  clean class's own variation: it split a 47%-poisoned digits class with 58% recall, where the
  shared-covariance fit on the same features found all of the poison.
- The principal components are taken after whitening the class by the other classes' within-class
  covariance (``whiten``; see :mod:`bastion.detect.spectral` for why): the class's own top components
  can miss a poison that adds little variance. On a max-pooling LeNet (MNIST, a 5x5 "X" top-left on
  half of class 3) the top 10 components of the convolutional features held it 4.6 SD apart (clean
  classes up to 5.1); after whitening, 17.1 (clean classes at most 5.4). ``whiten=False`` restores
  Chen et al.'s components.
- The decision is the separation test of :class:`~bastion.detect.split_scan.SplitScanner` along the
  clusters' discriminant (default 10 SD), not the relative cluster size: clean classes split into
  uneven clusters too, and a poison share near half a class is not small.

Measured before the whitening (BadNets patch, target 0, 5% / 10% of the other images poisoned, i.e.
31% / 48% of class 0; models trained on the poisoned data; with it, digits' penultimate layer finds all
of the poison too, benchmarks/RESULTS.md): MNIST (mnist-cnn, 20,000 images, 2 epochs), penultimate layer:
separation 13.2 / 11.5, every poisoned sample flagged and no clean one; clean classes at most 4.6
(4.4 on a clean model). Digits (digits-cnn): the 128-unit penultimate layer separates the poison only
7.3 to 7.9 SD, while the clean class 1 holds a real subpopulation ("1" with a base, 18% of the class)
9.5 to 11.9 SD apart; on the pooled convolutional features (``layer="5"``) the poison lies 14.7 to
17.2 SD apart (all flagged, no clean sample), class 1's style 6.7 to 12.1.
"""

from __future__ import annotations

import math

import torch

from bastion.detect.activations import PENULTIMATE
from bastion.detect.data_scan import check_count
from bastion.detect.split_scan import Reference, SplitScanner, check_ridge, principal_axes, whitened
from bastion.errors import DetectorError

__all__ = ["ActivationClustering"]


def two_means(z: torch.Tensor, generator: torch.Generator, steps: int = 100) -> torch.Tensor:
    """Lloyd's 2-means on rows of ``z`` (n, k) from a 2-means++ start; cluster membership (n,) bool."""
    first = int(torch.randint(z.shape[0], (1,), generator=generator))
    weight = (z - z[first]).square().sum(1).cpu()
    second = int(torch.multinomial(weight, 1, generator=generator)) if float(weight.sum()) > 0 else first
    centres = z[[first, second]]
    member = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    for _ in range(steps):
        new = torch.cdist(z, centres).argmin(1).bool()
        if bool((new == member).all()) or bool(new.all()) or not bool(new.any()):
            break
        member = new
        centres = torch.stack([z[~member].mean(0), z[member].mean(0)])
    return member


def _pooled(z: torch.Tensor, member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean difference (k,) of the two groups and their pooled covariance (k, k), slightly ridged so
    that a degenerate direction (a constant unit) cannot make it singular."""
    n, k = z.shape
    m1, m0 = z[member].mean(0), z[~member].mean(0)
    resid = z - torch.where(member[:, None], m1, m0)
    within = resid.T @ resid / max(n - 2, 1)
    ridge = 1e-9 * float(within.trace()) / k + 1e-300
    return m1 - m0, within + ridge * torch.eye(k, dtype=z.dtype, device=z.device)


def _sizes_ok(member: torch.Tensor) -> bool:
    n1 = int(member.sum())
    return n1 >= 2 and member.numel() - n1 >= 2


def tied_gaussians(z: torch.Tensor, member: torch.Tensor, steps: int = 50) -> tuple[torch.Tensor, float]:
    """Refine a split of ``z`` (n, k) as two Gaussians with a shared covariance (hard EM).

    Returns the membership (n,) bool and its classification log-likelihood (up to a constant;
    -inf when a group has fewer than two samples).
    """
    if not _sizes_ok(member):
        return member, -math.inf
    n = z.shape[0]
    for _ in range(steps):
        n1 = int(member.sum())
        diff, within = _pooled(z, member)
        w = torch.linalg.solve(within, diff)
        m0 = z[~member].mean(0)
        bias = float((2 * m0 + diff) @ w) / 2 - math.log(n1 / (n - n1))  # equal posteriors
        new = z @ w > bias
        if not _sizes_ok(new) or bool((new == member).all()):
            break
        member = new
    n1 = int(member.sum())
    within = _pooled(z, member)[1]
    loglik = -0.5 * n * float(torch.linalg.slogdet(within)[1])
    return member, loglik + n1 * math.log(n1 / n) + (n - n1) * math.log((n - n1) / n)


def discriminant(z: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """Fisher's discriminant (n,) of the split: projection on W⁻¹(m1 - m0), W the pooled covariance."""
    if not _sizes_ok(member):
        return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    diff, within = _pooled(z, member)
    return z @ torch.linalg.solve(within, diff)


class ActivationClustering(SplitScanner):
    """Per class: PCA to ``dims`` components, two shared-covariance clusters, separation test.

    ``ActivationClustering(dims=10, restarts=4, min_separation=10.0).scan(model, train_set)``;
    ``whiten_dims`` and ``ridge`` are the whitening's subspace and ridge, as ``SpectralSignatures``'
    ``dims`` and ``ridge``.
    A class of n samples uses at most n // 10 components, so small classes cannot be split far apart
    by chance (the fitted discriminant would otherwise overfit them). Same seed, same result.
    """

    method = "ac"

    def __init__(
        self,
        *,
        dims: int = 10,
        restarts: int = 4,
        whiten: bool = True,
        whiten_dims: int = 64,
        ridge: float = 0.01,
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
        self.restarts = check_count("restarts", restarts, 0)
        self.whiten_dims = check_count("whiten_dims", whiten_dims, 1)
        self.ridge = check_ridge(ridge)
        if not isinstance(whiten, bool):
            raise DetectorError(f"whiten must be True or False, got {whiten!r}")
        self.whiten = whiten

    def _split(
        self, x: torch.Tensor, generator: torch.Generator, reference: Reference
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The shared-covariance fit is invariant to linear maps of its subspace, but *which* subspace is
        # not: the class's top principal directions can miss a poison that adds little variance. Chosen
        # after whitening by the other classes, they keep it (docs/poisoning.md, as for spectral).
        n = x.shape[0]
        if self.whiten:
            x = whitened(x, reference, min(self.whiten_dims, max(1, n // 10)), self.ridge, generator)
        axes = principal_axes(x, min(self.dims, max(1, n // 10)), generator) if x.shape[1] else x[:0].T
        if axes.shape[1] == 0:
            none = torch.zeros(n, dtype=torch.bool, device=x.device)
            return torch.zeros(n, dtype=x.dtype, device=x.device), none
        z = x @ axes
        starts = [z[:, 0] > z[:, 0].median()] + [two_means(z, generator) for _ in range(self.restarts)]
        best, best_loglik = starts[0], -math.inf
        for start in starts:
            member, loglik = tied_gaussians(z, start)
            if loglik > best_loglik:
                best, best_loglik = member, loglik
        minority = best if int(best.sum()) * 2 <= n else ~best
        return discriminant(z, minority), minority
