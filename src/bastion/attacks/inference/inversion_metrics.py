"""How good a model-inversion reconstruction is: evaluator accuracy and SSIM to the class mean.

- **Evaluator accuracy** (the field's main number since Fredrikson et al. 2015 and Zhang et al. 2020,
  "The Secret Revealer"): an independent classifier, trained separately on the same task, labels the
  reconstructions; the share it recognises as the class they were reconstructed for.
- **SSIM** (Wang, Bovik, Sheikh and Simoncelli, "Image Quality Assessment: From Error Visibility to
  Structural Similarity", IEEE TIP 2004) between each reconstruction and the mean training image of
  its class, with the paper's 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over
  the valid (unpadded) window positions and the channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bastion.data.dataset import Dataset
from bastion.errors import DataError
from bastion.model import Classifier

__all__ = [
    "InversionQuality",
    "class_means",
    "evaluator_accuracy",
    "gaussian_window",
    "inversion_quality",
    "ssim",
]


@dataclass(frozen=True)
class InversionQuality:
    """Evaluator accuracy (share of ``recognised``), per-class SSIM to the class mean (K,) and its mean."""

    evaluator_accuracy: float
    recognised: torch.Tensor
    ssim: torch.Tensor
    mean_ssim: float

    def to_dict(self) -> dict[str, object]:
        return {
            "evaluator_accuracy": self.evaluator_accuracy,
            "mean_ssim": self.mean_ssim,
            "recognised": self.recognised.tolist(),
            "ssim": self.ssim.tolist(),
        }


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size, size) float64 Gaussian weights summing to one, centred on the middle pixel."""
    if size < 1 or sigma <= 0:
        raise DataError(f"window size must be >= 1 and sigma > 0, got {size}, {sigma}")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    w = g[:, None] * g[None, :]
    return w / w.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM (N,) of images x (N, C, H, W) against y (same shape, or (1, C, H, W) broadcast).

    Local statistics use the Gaussian window (shrunk to the image when the image is smaller);
    ``data_range`` is L in C1 = (K1 L)^2, C2 = (K2 L)^2. Computed in float64. SSIM(x, x) = 1.
    """
    if x.dim() != 4 or y.dim() != 4 or x.shape[1:] != y.shape[1:]:
        raise DataError(
            f"ssim needs images (N, C, H, W) of one shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    x, y = x.double(), y.double().expand_as(x).to(x.device)
    size = min(window_size, x.shape[2], x.shape[3])
    w = gaussian_window(size, sigma).to(x.device)[None, None].expand(x.shape[1], 1, size, size)

    def local(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, w, groups=x.shape[1])

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = local(x), local(y)
    vx, vy = local(x * x) - mx**2, local(y * y) - my**2
    cxy = local(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return smap.flatten(1).mean(1)


def class_means(data: Dataset, classes: torch.Tensor) -> torch.Tensor:
    """The mean input of each class in ``classes`` (K,): (K, ...) from ``data``. DataError for a class
    with no samples."""
    means = []
    for k in torch.as_tensor(classes).flatten().tolist():
        members = data.x[data.y == k]
        if members.shape[0] == 0:
            raise DataError(f"{data.name} has no samples of class {k}; cannot form its mean image")
        means.append(members.mean(0))
    return torch.stack(means)


def evaluator_accuracy(
    evaluator: Classifier, reconstructions: torch.Tensor, classes: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """(share recognised, recognised (K,) bool): does ``evaluator`` label reconstruction i as classes[i]."""
    with torch.no_grad():
        predicted = evaluator(reconstructions).argmax(1).cpu()
    recognised = predicted == torch.as_tensor(classes).flatten().cpu()
    return float(recognised.float().mean()), recognised


def inversion_quality(
    reconstructions: torch.Tensor,
    classes: torch.Tensor,
    evaluator: Classifier,
    reference: Dataset,
) -> InversionQuality:
    """Evaluator accuracy and SSIM to the class means of ``reference`` (the training data) of
    reconstructions (K, C, H, W) of ``classes`` (K,); SSIM's data range is the reference's bounds."""
    accuracy, recognised = evaluator_accuracy(evaluator, reconstructions, classes)
    means = class_means(reference, classes).to(reconstructions.device)
    low, high = reference.bounds
    scores = ssim(reconstructions, means, data_range=high - low).cpu()
    return InversionQuality(accuracy, recognised, scores, float(scores.mean()))
