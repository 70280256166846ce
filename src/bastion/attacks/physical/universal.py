"""Universal adversarial perturbations: one small pattern ``v`` that changes the model's label on most
inputs, fitted on one set and judged on held-out inputs.

- :class:`UniversalDeepFool` — Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, "Universal adversarial
  perturbations" (CVPR 2017), Algorithm 1: pass over the fitting inputs; for each input ``x`` whose label
  ``x + v`` does not change yet, find the minimal perturbation that moves ``x + v`` across the boundary
  (DeepFool) and add it to ``v``, projected back onto the ``epsilon`` ball; stop when the fooling rate on
  the fitting set reaches ``target`` or after ``passes`` passes. ``chunk`` > 1 computes that many DeepFool
  steps at the same ``v`` before adding them (faster, an approximation of the sequential algorithm).
- :class:`UniversalGradient` — the gradient variant (stochastic projected ascent on ``v``, as in
  Shafahi et al., "Universal adversarial training", AAAI 2020): minibatches of the fitting set, the
  cross-entropy of the clean labels at ``x + v`` (per input clamped at ``max_loss``, so inputs already
  fooled stop pulling), sign steps for linf and normalised steps for l2, projected.

The fooling rate (the paper's measure) is the share of inputs whose predicted label changes:
``f(x + v) != f(x)``, with ``x + v`` clipped to the bounds. ``v`` is always inside the threat's ball.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from bastion.attacks.base import check_positive
from bastion.errors import AttackError, ThreatModelError
from bastion.model import Classifier, predict
from bastion.threat import Norm, ThreatModel

__all__ = ["UniversalDeepFool", "UniversalGradient", "check_universal_threat", "fooling_rate", "project"]


def check_universal_threat(threat: ThreatModel, x: torch.Tensor) -> None:
    """Refuse a budget on the wrong scale: an epsilon at least the bounds' width (linf) or the diameter
    of the input box (l2) is no constraint at all, usually an epsilon given in pixel units (8 for 8/255)."""
    low, high = threat.bounds
    width = high - low
    limit = width if threat.norm is Norm.LINF else width * math.sqrt(x[0].numel())
    if not math.isfinite(threat.epsilon) or threat.epsilon >= limit:
        raise ThreatModelError(
            f"epsilon {threat.epsilon:g} is not below the largest possible {threat.norm.value} change "
            f"{limit:g} for inputs in [{low:g}, {high:g}]: give epsilon in the inputs' units (8/255, not 8)"
        )


def project(v: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """``v`` (C, H, W) projected onto the threat's ball around 0 (linf: clamp; l2: rescale)."""
    if threat.norm is Norm.LINF:
        return v.clamp(-threat.epsilon, threat.epsilon)
    norm = v.norm(p=2)
    return v if norm <= threat.epsilon else v * (threat.epsilon / norm)


def fooling_rate(
    model: Classifier, x: torch.Tensor, v: torch.Tensor, threat: ThreatModel, *, batch_size: int = 512
) -> float:
    """Share of ``x`` (N, ...) whose predicted label changes when ``v`` is added (clipped to the bounds)."""
    clean = predict(model, x, batch_size=batch_size).argmax(1)
    moved = predict(model, (x + v).clamp(*threat.bounds), batch_size=batch_size).argmax(1)
    return float((clean != moved).float().mean())


class UniversalDeepFool:
    """``UniversalDeepFool(passes=5, target=0.8, chunk=1, deepfool_steps=50, overshoot=0.02)``;
    ``fit(model, x, threat, seed=0) -> v`` with ``v`` (C, H, W) inside the threat's ball."""

    name = "universal-deepfool"

    def __init__(self, passes: int = 5, target: float = 0.8, chunk: int = 1, deepfool_steps: int = 50,
                 overshoot: float = 0.02) -> None:  # fmt: skip
        check_positive("passes", passes, integer=True)
        check_positive("chunk", chunk, integer=True)
        check_positive("deepfool_steps", deepfool_steps, integer=True)
        check_positive("overshoot", overshoot, allow_zero=True)
        if not 0 < target <= 1:
            raise AttackError(f"target is a fooling rate in (0, 1], got {target!r}")
        self.passes, self.target, self.chunk = int(passes), float(target), int(chunk)
        self.deepfool_steps, self.overshoot = int(deepfool_steps), float(overshoot)

    def params(self) -> dict[str, Any]:
        return {"passes": self.passes, "target": self.target, "chunk": self.chunk,
                "deepfool_steps": self.deepfool_steps, "overshoot": self.overshoot}  # fmt: skip

    def fit(self, model: Classifier, x: torch.Tensor, threat: ThreatModel, *, seed: int = 0) -> torch.Tensor:
        from bastion.attacks.evasion.deepfool import DeepFool

        check_universal_threat(threat, x)
        deepfool = DeepFool(steps=self.deepfool_steps, overshoot=self.overshoot, refine_steps=0)
        free = ThreatModel(threat.norm, math.inf, bounds=threat.bounds)
        g = torch.Generator().manual_seed(int(seed))
        clean = predict(model, x).argmax(1)
        v = torch.zeros_like(x[0])
        for _ in range(self.passes):
            for lo in range(0, x.shape[0], self.chunk):
                order = torch.randperm(x.shape[0], generator=g)[lo : lo + self.chunk].to(x.device)
                xs = (x[order] + v).clamp(*threat.bounds)
                with torch.no_grad():
                    still = model(xs).argmax(1) == clean[order]
                if not bool(still.any()):
                    continue
                res = deepfool(model, xs[still], clean[order][still], free, seed=seed)
                step = (res.x_adv - xs[still])[res.success]
                if step.shape[0]:
                    v = project(v + step.sum(0), threat)
            if fooling_rate(model, x, v, threat) >= self.target:
                break
        return v.detach()


class UniversalGradient:
    """``UniversalGradient(epochs=10, batch_size=64, step_size=None, max_loss=5.0)``; ``step_size``
    defaults to ``epsilon / 10``; ``fit(model, x, threat, seed=0) -> v`` inside the threat's ball."""

    name = "universal-gradient"

    def __init__(self, epochs: int = 10, batch_size: int = 64, step_size: float | None = None,
                 max_loss: float = 5.0) -> None:  # fmt: skip
        check_positive("epochs", epochs, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        check_positive("max_loss", max_loss)
        if step_size is not None:
            check_positive("step_size", step_size)
        self.epochs, self.batch_size, self.step_size, self.max_loss = (
            int(epochs),
            int(batch_size),
            step_size,
            float(max_loss),
        )

    def params(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "step_size": self.step_size,
                "max_loss": self.max_loss}  # fmt: skip

    def fit(self, model: Classifier, x: torch.Tensor, threat: ThreatModel, *, seed: int = 0) -> torch.Tensor:
        check_universal_threat(threat, x)
        step = self.step_size if self.step_size is not None else threat.epsilon / 10
        g = torch.Generator().manual_seed(int(seed))
        clean = predict(model, x).argmax(1)
        v = torch.zeros_like(x[0])
        for _ in range(self.epochs):
            order = torch.randperm(x.shape[0], generator=g).to(x.device)
            for lo in range(0, x.shape[0], self.batch_size):
                idx = order[lo : lo + self.batch_size]
                v = v.detach().requires_grad_(True)
                loss = F.cross_entropy(
                    model((x[idx] + v).clamp(*threat.bounds)), clean[idx], reduction="none"
                )
                (grad,) = torch.autograd.grad(loss.clamp(max=self.max_loss).mean(), v)
                with torch.no_grad():
                    if threat.norm is Norm.LINF:
                        v = v + step * grad.sign()
                    else:
                        v = v + step * grad / grad.norm(p=2).clamp_min(1e-12)
                    v = project(v, threat)
        return v.detach()
