"""MI-Face: model inversion from confidence scores (Fredrikson, Jha and Ristenpart, CCS 2015).

"Model Inversion Attacks that Exploit Confidence Information and Basic Countermeasures", Algorithm 1:
reconstruct a representative input of class ``k`` by gradient descent on

    c(x) = 1 - p_k(x) + tv_weight * TV(x)

from ``x_0 = 0`` (clipped into the bounds) with step ``lambda`` (``step_size``), keeping the best
iterate. Stopping rules: at most ``alpha`` (``steps``) updates; no improvement of the best cost for
``beta`` (``patience``) evaluations (the paper stops when the cost exceeds the last ``beta`` costs;
"no new best for ``beta`` steps" is the same test made robust to noisy estimates); cost at or below
``gamma`` (``threshold``, in cost units: 0.01 means confidence 0.99). The paper used alpha=5000,
beta=100, lambda=0.1. ``postprocess`` (denoise, sharpen) is applied to the returned images only.

Black-box (default, ``gradient="nes"``): the model is seen only through ``softmax(model(x))`` under
``torch.no_grad()`` (what an output policy releases), and the gradient of ``p_k`` is estimated with
antithetic Gaussian sampling (NES, Wierstra et al. 2014; Ilyas et al. 2018):
``g = sum_i (p_k(x + sigma u_i) - p_k(x - sigma u_i)) u_i / (2 sigma m)`` over ``m = samples / 2``
pairs. Every evaluation of a class costs ``samples + 1`` rows (the +1 is the cost at ``x``); every
row sent is counted in ``queries``. Rounded outputs make small differences vanish (the estimate is
often exactly zero); label-only outputs make ``p_k`` 0/1, so the estimate is zero until a probe
crosses into class ``k``. The attack reports what it reached either way (``stop_reason``).
White-box (``gradient="white-box"``) differentiates the model itself: an upper bound on the leak,
flagged in the result, meaningless on a policy wrapper (its outputs are piecewise constant).

The parts live beside this file: the NES estimator in ``_nes``, the stopping rules and best-iterate
bookkeeping in ``_mi_face_search``, total variation and the post-processing filters in ``_mi_face_images``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks.base import differentiable
from bastion.attacks.inference._mi_face_images import POSTPROCESS, total_variation
from bastion.attacks.inference._mi_face_images import postprocess as _postprocess
from bastion.attacks.inference._mi_face_search import Search
from bastion.attacks.inference._nes import nes_gradient
from bastion.errors import AttackError
from bastion.model import Classifier

__all__ = ["GRADIENTS", "POSTPROCESS", "MIFace", "MIFaceResult", "total_variation"]

GRADIENTS = ("nes", "white-box")


@dataclass(frozen=True)
class MIFaceResult:
    """Reconstructions (K, C, H, W) of ``classes`` (K,), their released confidence and cost (K,), the
    updates each ran (K,) and why it stopped ("steps", "patience", "threshold", "budget")."""

    reconstructions: torch.Tensor
    classes: torch.Tensor
    confidence: torch.Tensor
    cost: torch.Tensor
    steps: torch.Tensor
    stop_reason: tuple[str, ...]
    queries: int
    gradient_evals: int
    white_box: bool
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Everything but the images, JSON-ready."""
        return {
            "classes": self.classes.tolist(),
            "confidence": self.confidence.tolist(),
            "cost": self.cost.tolist(),
            "steps": self.steps.tolist(),
            "stop_reason": list(self.stop_reason),
            "queries": self.queries,
            "gradient_evals": self.gradient_evals,
            "white_box": self.white_box,
            "params": self.params,
            "seed": self.seed,
        }


class MIFace:
    """MI-Face (Fredrikson et al. 2015, Algorithm 1); see the module docstring.

    ``sigma`` is the NES probe radius in input units; ``max_queries`` caps the rows sent per class
    (None: no cap); ``batch_size`` caps the rows per model call. ``normalize`` (not in the paper)
    rescales each step so its root-mean-square pixel change is ``step_size``: ``p_k``'s gradient
    vanishes where ``p_k`` is tiny or near one (and NES estimates have an arbitrary scale), so the
    paper's raw step crawls from a start the model gives no confidence to.
    """

    def __init__(
        self,
        *,
        steps: int = 5000,
        patience: int = 100,
        threshold: float = 0.01,
        step_size: float = 0.1,
        gradient: str = "nes",
        samples: int = 50,
        sigma: float = 0.01,
        tv_weight: float = 0.0,
        postprocess: str = "none",
        max_queries: int | None = None,
        normalize: bool = False,
        batch_size: int = 4096,
    ) -> None:
        if gradient not in GRADIENTS:
            raise AttackError(f"unknown gradient {gradient!r}; use one of: {', '.join(GRADIENTS)}")
        if postprocess not in POSTPROCESS:
            raise AttackError(f"unknown postprocess {postprocess!r}; use one of: {', '.join(POSTPROCESS)}")
        if steps < 0 or patience < 1 or batch_size < 1:
            raise AttackError("steps must be >= 0, patience and batch_size >= 1")
        if samples < 2 or samples % 2:
            raise AttackError(f"samples must be an even number >= 2 (antithetic pairs), got {samples}")
        if not (step_size > 0 and sigma > 0 and tv_weight >= 0):
            raise AttackError("step_size and sigma must be > 0, tv_weight >= 0")
        if max_queries is not None and max_queries < 1:
            raise AttackError(f"max_queries must be >= 1 (or None), got {max_queries}")
        self.steps, self.patience, self.threshold = steps, patience, threshold
        self.step_size, self.gradient, self.samples, self.sigma = step_size, gradient, samples, sigma
        self.tv_weight, self.postprocess, self.max_queries = tv_weight, postprocess, max_queries
        self.normalize = normalize
        self.batch_size = batch_size

    @property
    def white_box(self) -> bool:
        return self.gradient == "white-box"

    def params(self) -> dict[str, Any]:
        keys = ("steps", "patience", "threshold", "step_size", "gradient", "samples", "sigma")
        extra = ("tv_weight", "postprocess", "max_queries", "normalize")
        return {k: getattr(self, k) for k in (*keys, *extra)}

    def _confidence(self, model: Classifier, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Released p_k for rows x (R, ...) and classes k (R,), under no_grad, in chunks."""
        parts = []
        with torch.no_grad():
            for s in range(0, x.shape[0], self.batch_size):
                p = torch.softmax(model(x[s : s + self.batch_size]), 1)
                parts.append(p.gather(1, k[s : s + self.batch_size, None])[:, 0])
        return torch.cat(parts)

    def _tv_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tv_weight == 0:
            return torch.zeros(x.shape[0], device=x.device), torch.zeros_like(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            tv = self.tv_weight * total_variation(xg)
            (g,) = torch.autograd.grad(tv.sum(), xg)
        return tv.detach(), g

    def cost_and_gradient(
        self, model: Classifier, x: torch.Tensor, k: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(released p_k (R,), cost (R,), gradient of the cost (R, ...)) at rows x (R, ...) for classes
        k (R,): the model's own gradient (white-box) or the NES estimate drawn from ``g`` (CPU)."""
        tv, tv_grad = self._tv_grad(x)
        if self.white_box:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                p = torch.softmax(differentiable(model(xg)), 1).gather(1, k[:, None])[:, 0]
                (grad_p,) = torch.autograd.grad(p.sum(), xg)
            p = p.detach()
        else:
            p, grad_p = nes_gradient(
                lambda rows, kk: self._confidence(model, rows, kk),
                x,
                k,
                samples=self.samples,
                sigma=self.sigma,
                bounds=model.bounds,
                generator=g,
            )
        return p, 1.0 - p + tv, tv_grad - grad_p

    def run(
        self,
        model: Classifier,
        classes: torch.Tensor | list[int],
        *,
        shape: tuple[int, ...] | None = None,
        start: torch.Tensor | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> MIFaceResult:
        """Invert ``classes`` (K,) of ``model``, all at once, from one ``start`` input (C, H, W), or
        from the paper's zero start (clipped into the bounds) of ``shape`` on ``device`` (the model's;
        a given ``start`` keeps its own device). Same seed, same result.
        ``progress(step, steps)`` is called after every evaluation."""
        k = torch.as_tensor(classes, dtype=torch.long).flatten()
        if k.numel() == 0:
            raise AttackError("no classes to invert")
        low, high = model.bounds
        if start is None:
            if shape is None:
                raise AttackError("pass shape=(C, H, W) (the model's input shape) or a start image")
            start = torch.zeros(shape, device=device)
        n_cls = model.num_classes
        if n_cls is not None and (int(k.min()) < 0 or int(k.max()) >= n_cls):
            raise AttackError(f"classes must lie in [0, {n_cls}), got {k.tolist()}")
        per_eval = 1 if self.white_box else self.samples + 1
        if self.max_queries is not None and self.max_queries < per_eval:
            raise AttackError(f"max_queries={self.max_queries} is below one evaluation ({per_eval} rows)")
        n = k.numel()
        x = start.detach().float().expand(n, *start.shape).clone().clamp(low, high)
        k = k.to(x.device)
        g = torch.Generator().manual_seed(seed)
        search = Search(
            x,
            steps=self.steps,
            patience=self.patience,
            threshold=self.threshold,
            max_queries=self.max_queries,
            per_eval=per_eval,
        )
        grad_evals = 0
        for i in range(self.steps + 1):
            active = search.affordable()
            if active.numel() == 0:
                break
            ia = active.to(x.device)
            p, cost, grad = self.cost_and_gradient(model, x[ia], k[ia], g)
            grad_evals += active.numel() if self.white_box else 0
            keep = search.record(i, x, p.cpu(), cost.cpu()).to(x.device)
            step = grad[keep]
            if self.normalize:  # root-mean-square pixel change = step_size, whatever the gradient's scale
                rms = step.flatten(1).norm(dim=1).div(x[0].numel() ** 0.5).clamp_min(1e-30)
                step = step / rms.view(-1, *([1] * (step.dim() - 1)))
            x[ia[keep]] = (x[ia[keep]] - self.step_size * step).clamp(low, high)
            search.advance(keep.cpu())
            if progress is not None:
                progress(i + 1, self.steps + 1)
        recon = _postprocess(search.best_x, self.postprocess).clamp(low, high)
        return MIFaceResult(
            reconstructions=recon,
            classes=k.cpu(),
            confidence=search.best_p,
            cost=search.best_cost,
            steps=search.done,
            stop_reason=tuple(search.reason),
            queries=int(search.used.sum()),
            gradient_evals=grad_evals,
            white_box=self.white_box,
            params=self.params(),
            seed=seed,
        )
