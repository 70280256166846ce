"""The universal adversarial patch with Expectation over Transformation.

Brown, Mané, Roy, Abadi & Gilmer, "Adversarial Patch" (2017): one visible patch ``p`` that, pasted anywhere
on an image under random scale, rotation, position and brightness (the distribution ``T`` of a
:class:`PatchThreat`), makes the model predict ``target``. It maximises
``E_{x ~ X, t ~ T} [log P(target | A(p, x, t))]`` (untargeted: the loss of the true label) by stochastic
gradient ascent: each step draws a minibatch of inputs and ``eot_samples`` placements per input from one
seeded generator.

Steps are signed (``p += step_size * (hi - lo) * sign(grad)``, then clipped to the bounds), as in PGD: the
patch lives in a box, where the sign is the steepest ascent direction; the step is in units of the bounds'
width whatever the gradient's scale (which swings with the mask's coverage and the brightness), and no
optimiser state has to be kept or seeded. ``step_size=0.01`` with 500 steps lets each pixel cross the box
five times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.attacks.physical.patch_threat import PatchPlacement, PatchThreat
from bastion.errors import AttackError, DataError
from bastion.model import Classifier, predict

__all__ = ["AdversarialPatch", "PatchResult", "PatchScore", "patch_step"]


def _check_inputs(x: torch.Tensor, threat: PatchThreat) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point() or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"x must be a non-empty floating-point image batch (N, C, H, W), got {shape}")
    low, high = threat.bounds
    if bool((x < low).any() or (x > high).any()):
        raise DataError(f"x has values outside the threat's bounds [{low:g}, {high:g}]")
    threat.check_fits((int(x.shape[2]), int(x.shape[3])))


@dataclass(frozen=True)
class PatchScore:
    """Success of a patch on held-out inputs: ``success_rate`` with the patch, ``baseline_rate`` with a
    random patch at the same placements, over ``counted`` eligible inputs times ``draws`` placements."""

    success_rate: float
    baseline_rate: float
    counted: int
    draws: int
    placements: str


@dataclass(frozen=True)
class PatchResult:
    """``patch`` (C, h, w) inside ``threat.bounds``, fitted for ``target`` (None: untargeted)."""

    patch: torch.Tensor
    threat: PatchThreat
    target: int | None
    params: dict[str, Any]
    seed: int
    seconds: float

    def evaluate(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        placements: Literal["train", "unseen"] = "train",
        draws: int = 4,
        seed: int = 1,
        batch_size: int = 512,
    ) -> PatchScore:
        """Success on ``x`` (N, C, H, W) with labels ``y`` (N,) at ``draws`` placements per input.

        Targeted: the share of inputs neither labelled nor clean-classified as ``target`` that the patched
        input is classified as ``target``. Untargeted: the share of correctly classified inputs that the
        patched input is misclassified. ``placements="train"`` draws fresh placements from the EOT
        distribution; ``"unseen"`` draws them outside it (``PatchThreat.sample(outside=True)``: scales,
        angles and brightness beyond the training ranges; the centre for corner training and vice versa).
        The baseline pastes a random patch (uniform in the bounds) at the very same placements.
        """
        if placements not in ("train", "unseen"):
            raise AttackError(f"placements must be 'train' or 'unseen', got {placements!r}")
        check_positive("draws", draws, integer=True)
        _check_inputs(x, self.threat)
        y = y.to(x.device)
        if y.shape != (x.shape[0],):
            raise DataError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        clean = predict(model, x, batch_size=batch_size).argmax(1)
        keep = (y != self.target) & (clean != self.target) if self.target is not None else clean == y
        xs, ys = x[keep], y[keep]
        if xs.shape[0] == 0:
            raise DataError("no eligible inputs (all of the target class, or all misclassified when clean)")
        g = torch.Generator().manual_seed(int(seed))
        low, high = self.threat.bounds
        noise = low + (high - low) * torch.rand(self.patch.shape, generator=g).to(self.patch)
        hw = (int(x.shape[2]), int(x.shape[3]))
        hits = torch.zeros(2, device=x.device)
        for _ in range(int(draws)):
            placement = self.threat.sample(xs.shape[0], hw, g, outside=placements == "unseen")
            for k, patch in enumerate((self.patch, noise)):
                for lo in range(0, xs.shape[0], batch_size):
                    sl = slice(lo, lo + batch_size)
                    part = placement.subset(sl)
                    with torch.no_grad():
                        pred = model(self.threat.apply(xs[sl], patch, part)[0]).argmax(1)
                    won = pred == self.target if self.target is not None else pred != ys[sl]
                    hits[k] += won.sum()
        rates = (hits / (xs.shape[0] * draws)).tolist()
        return PatchScore(rates[0], rates[1], int(xs.shape[0]), int(draws), placements)


def patch_step(
    model: Callable[[torch.Tensor], torch.Tensor],
    threat: PatchThreat,
    x: torch.Tensor,
    patch: torch.Tensor,
    placement: PatchPlacement,
    step: float,
    *,
    labels: torch.Tensor,
    target: int | None = None,
) -> torch.Tensor:
    """One signed-gradient step of ``patch`` (C, h, w) up the attacker's objective on ``x`` pasted at
    ``placement``: the target's log-probability (targeted) or the cross-entropy against ``labels``
    (untargeted); clipped to the bounds, detached. The fitting loop here and patch adversarial training
    (``harden --method patch``) both climb with it."""
    low, high = threat.bounds
    patch = patch.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(threat.apply(x, patch, placement)[0])
        if target is not None:
            objective = F.log_softmax(logits, dim=1)[:, target].mean()
        else:
            objective = F.cross_entropy(logits, labels)
        (grad,) = torch.autograd.grad(objective, patch)
    with torch.no_grad():
        return (patch + step * grad.sign()).clamp(low, high)


class AdversarialPatch:
    """``AdversarialPatch(steps=500, batch_size=32, step_size=0.01, eot_samples=1)``;
    ``fit(model, x, threat, target=t)`` (targeted) or ``fit(model, x, threat, y=y)`` (untargeted; without
    ``y`` the clean predictions) -> :class:`PatchResult`."""

    name = "adversarial-patch"

    def __init__(
        self, steps: int = 500, batch_size: int = 32, step_size: float = 0.01, eot_samples: int = 1
    ) -> None:
        check_positive("steps", steps, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        check_positive("step_size", step_size)
        check_positive("eot_samples", eot_samples, integer=True)
        self.steps, self.batch_size, self.eot_samples = int(steps), int(batch_size), int(eot_samples)
        self.step_size = float(step_size)

    def params(self) -> dict[str, Any]:
        return {"steps": self.steps, "batch_size": self.batch_size, "step_size": self.step_size,
                "eot_samples": self.eot_samples}  # fmt: skip

    def fit(
        self,
        model: Classifier,
        x: torch.Tensor,
        threat: PatchThreat,
        *,
        target: int | None = None,
        y: torch.Tensor | None = None,
        seed: int = 0,
    ) -> PatchResult:
        """Fit a patch on ``x`` (N, C, H, W); the result's ``patch`` (C, h, w) is always in the bounds.

        Every random draw (the initial patch, minibatches, placements) comes from ``Generator(seed)``:
        same seed, same patch.
        """
        t0 = time.perf_counter()
        _check_inputs(x, threat)
        if target is not None:
            k = model.num_classes
            if isinstance(target, bool) or not isinstance(target, int) or target < 0 or (k and target >= k):
                raise AttackError(f"target must be a class index in [0, {k}), got {target!r}")
            if y is not None:
                raise AttackError("give either target (targeted) or y (untargeted), not both")
        labels = y.to(x.device) if y is not None else predict(model, x).argmax(1)
        if labels.shape != (x.shape[0],):
            raise DataError(f"y must have shape ({x.shape[0]},), got {tuple(labels.shape)}")
        g = torch.Generator().manual_seed(int(seed))
        low, high = threat.bounds
        hw = (int(x.shape[2]), int(x.shape[3]))
        shape = (int(x.shape[1]), *threat.patch_shape(hw))
        patch = (low + (high - low) * torch.rand(shape, generator=g)).to(x)
        step = self.step_size * (high - low)
        for _ in range(self.steps):
            idx = torch.randperm(x.shape[0], generator=g)[: self.batch_size].repeat(self.eot_samples)
            placement = threat.sample(idx.shape[0], hw, g)
            idx = idx.to(x.device)
            patch = patch_step(
                model, threat, x[idx], patch, placement, step, labels=labels[idx], target=target
            )
        return PatchResult(patch.detach(), threat, target, self.params(), int(seed), time.perf_counter() - t0)
