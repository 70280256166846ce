"""A classifier behind input transformations, attackable by every attack (BPDA and EOT make it adaptive).

``DefendedClassifier(model, transforms)`` is itself a :class:`~bastion.model.Classifier`: logits of
``model(t_k(... t_1(x)))``. How gradients cross the transforms is the ``mode``:

- ``"naive"``: through the transforms' torch ops as written. Rounding (JPEG, bit depth) has a zero
  gradient almost everywhere, so gradient attacks stall: the *obfuscated gradients* a naive
  evaluator measures (Athalye, Carlini & Wagner 2018).
- ``"bpda"``: the forward pass is the exact transform, the backward pass the transform's
  differentiable surrogate (Backward Pass Differentiable Approximation, same paper).

Randomised transforms draw from the classifier's own seeded ``torch.Generator`` (one per device), so
every forward pass sees a fresh draw and attacks' EOT (``eot_samples=``) averages over draws
(Expectation over Transformation, Athalye, Engstrom, Ilyas & Kwok 2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from bastion.defenses.transforms import DefenseError, Transform, parse_defense
from bastion.model import Classifier, as_classifier
from bastion.threat import Bounds

__all__ = ["DefendedClassifier", "Mode"]

Mode = Literal["bpda", "naive"]
_MODES = ("bpda", "naive")


def as_transforms(transforms: str | Transform | Sequence[Transform]) -> tuple[Transform, ...]:
    """A tuple of transforms from a spec string (``"jpeg:75,bits:4"``), one transform or a sequence."""
    if isinstance(transforms, str):
        return tuple(parse_defense(transforms))
    items = (transforms,) if isinstance(transforms, Transform) else tuple(transforms)
    bad = [type(t).__name__ for t in items if not isinstance(t, Transform)]
    if bad:
        raise DefenseError(f"transforms must be Transform objects or a spec like 'jpeg:75', got {bad}")
    if not items:
        raise DefenseError("no transforms given; pass at least one, e.g. 'bits:4'")
    return items


class DefendedClassifier:
    """``model`` behind ``transforms`` (applied in order); a Classifier with the model's bounds.

    ``__call__(x)`` takes ``x`` (N, C, H, W) inside ``bounds`` and returns logits (N, K). ``seed``
    seeds the generator of randomised transforms: a fresh instance with the same seed, called the
    same way, gives the same logits. Neither ``x`` nor the wrapped model is modified.
    """

    def __init__(
        self,
        model: Classifier | nn.Module,
        transforms: str | Transform | Sequence[Transform],
        *,
        mode: Mode = "bpda",
        seed: int = 0,
    ) -> None:
        if mode not in _MODES:
            raise DefenseError(f"unknown mode {mode!r}; use one of: {', '.join(_MODES)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DefenseError(f"seed must be an integer, got {seed!r}")
        self.model = as_classifier(model)
        self.bounds: Bounds = self.model.bounds
        self.transforms = as_transforms(transforms)
        self.mode: Mode = mode
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    @property
    def randomized(self) -> bool:
        """True when some transform draws randomness (then attacks should use EOT)."""
        return any(t.randomized for t in self.transforms)

    @property
    def spec(self) -> str:
        """The transforms as a ``parse_defense`` spec, e.g. ``"jpeg:75,bits:4"``."""
        return ",".join(t.spec() for t in self.transforms)

    @property
    def name(self) -> str:
        return f"{getattr(self.model, 'name', type(self.model).__name__)} + {self.spec} ({self.mode})"

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator randomised transforms draw from on ``device`` (seeded on first use)."""
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def reset(self) -> None:
        """Restart the random draws from ``seed``."""
        self._generators.clear()

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed input (N, ...) the model sees, differentiable according to ``mode``."""
        gen = self.generator(x.device) if self.randomized else None
        for t in self.transforms:
            if self.mode == "bpda":
                x = t.bpda(x, bounds=self.bounds, generator=gen)
            else:
                x = t(x, bounds=self.bounds, generator=gen)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of the model on the transformed ``x`` (N, C, H, W)."""
        return self.model(self.transform(x))

    def __repr__(self) -> str:
        return f"DefendedClassifier({self.model!r}, {self.spec!r}, mode={self.mode!r}, seed={self.seed})"
