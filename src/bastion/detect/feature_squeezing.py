"""Feature squeezing (Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural
Networks", NDSS 2018).

A squeezer removes detail an adversary relies on (colour depth, pixel-level noise). A clean input's
prediction barely moves when it is squeezed; an adversarial's often does. The score is the largest L1
distance between the softmax prediction on ``x`` and on each squeezed copy:
``score(x) = max_i || softmax(f(x)) - softmax(f(squeeze_i(x))) ||_1``, in [0, 2].

Default squeezers follow the paper's best joint configurations: MNIST-like grey images get 1-bit depth
and a 2x2 median filter; colour images get 5-bit depth and a 2x2 median filter. The paper's third
CIFAR-10 squeezer, non-local means (11-3-4), is omitted: it is slow on a CPU and has no
differentiable surrogate here. Pass ``squeezers`` to use it or any other transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from bastion.defenses.transforms import BitDepth, MedianSmoothing
from bastion.defenses.transforms.base import Transform
from bastion.detect.base import Detector, DetectorError
from bastion.model import Classifier

__all__ = ["FeatureSqueezing", "default_squeezers"]


def default_squeezers(x: torch.Tensor) -> tuple[Transform, ...]:
    """Xu et al.'s squeezers for images ``x`` (N, C, H, W): grey (C = 1) → 1-bit depth + 2x2 median,
    colour → 5-bit depth + 2x2 median."""
    if x.dim() != 4:
        raise DetectorError(
            f"default squeezers need image batches (N, C, H, W), got shape {tuple(x.shape)}; "
            "pass squeezers=[...] explicitly (e.g. [BitDepth(bits=4)])"
        )
    bits = 1 if x.shape[1] == 1 else 5
    return (BitDepth(bits=bits), MedianSmoothing(size=2))


class FeatureSqueezing(Detector):
    """Joint feature-squeezing detector; score (N,) in [0, 2], higher = more suspicious.

    ``squeezers``: input transforms (``bastion.defenses.transforms``), applied inside the model's bounds;
    ``None`` picks :func:`default_squeezers` from the clean data at ``fit``. For adaptive attacks,
    :meth:`differentiable_score` back-propagates through each squeezer's BPDA surrogate.
    """

    name: ClassVar[str] = "feature-squeezing"

    def __init__(
        self, squeezers: Sequence[Transform] | None = None, *, fpr: float = 0.05, batch_size: int = 512
    ) -> None:
        super().__init__(fpr=fpr, batch_size=batch_size)
        if squeezers is not None:
            squeezers = tuple(squeezers)
            bad = [type(s).__name__ for s in squeezers if not isinstance(s, Transform)]
            if not squeezers or bad:
                raise DetectorError(
                    "squeezers must be a non-empty list of bastion.defenses.transforms transforms"
                    + (f"; got {', '.join(bad)}" if bad else "")
                )
        self.squeezers: tuple[Transform, ...] | None = squeezers
        self._active: tuple[Transform, ...] = squeezers or ()

    @property
    def active_squeezers(self) -> tuple[Transform, ...]:
        """The squeezers in use: the given ones, or after ``fit`` the defaults for the clean data."""
        return self._active

    def _prepare(self, model: Classifier, clean_x: torch.Tensor) -> None:
        self._active = self.squeezers or default_squeezers(clean_x)

    def _score(self, model: Classifier, x: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
        bounds = model.bounds
        squeezed = [s.bpda(x, bounds=bounds) if differentiable else s(x, bounds=bounds) for s in self._active]
        # One forward over x and every squeezed copy: (1 + S) * N inputs.
        probs = torch.softmax(model(torch.cat([x, *squeezed])), dim=1).view(1 + len(squeezed), x.shape[0], -1)
        return (probs[1:] - probs[0]).abs().sum(dim=2).amax(dim=0)

    def __repr__(self) -> str:
        names = ", ".join(repr(s) for s in self._active) if self._active else "default"
        return f"FeatureSqueezing(squeezers=[{names}], fpr={self.fpr})"
