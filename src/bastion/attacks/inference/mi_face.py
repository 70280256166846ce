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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks.base import differentiable
from bastion.errors import AttackError
from bastion.model import Classifier

__all__ = ["GRADIENTS", "POSTPROCESS", "MIFace", "MIFaceResult", "total_variation"]

GRADIENTS = ("nes", "white-box")
POSTPROCESS = ("none", "denoise", "sharpen", "denoise-sharpen")


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


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per sample (N,): mean absolute difference of neighbouring pixels of
    images (N, C, H, W)."""
    if x.dim() != 4:
        raise AttackError(f"tv_weight needs images (N, C, H, W), got shape {tuple(x.shape)}")
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def _blur(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    k2 = (kernel[:, None] * kernel[None, :] / 16.0).expand(x.shape[1], 1, 3, 3)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.conv2d(padded, k2, groups=x.shape[1])


def _postprocess(x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "none":
        return x
    if x.dim() != 4:
        raise AttackError(f"postprocess={how!r} needs images (K, C, H, W), got {tuple(x.shape)}")
    if "denoise" in how:
        x = _blur(x)
    if "sharpen" in how:  # unsharp mask
        x = x + 0.5 * (x - _blur(x))
    return x


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
            low, high = model.bounds
            m = self.samples // 2
            u = torch.randn((x.shape[0], m, *x.shape[1:]), generator=g).to(x.device, x.dtype)
            probes = torch.cat([x[:, None] + self.sigma * u, x[:, None] - self.sigma * u], 1)
            probes = probes.clamp(low, high).flatten(0, 1)
            rows = torch.cat([x, probes])
            kk = torch.cat([k, k.repeat_interleave(2 * m)])
            p_all = self._confidence(model, rows, kk)
            p, pp = p_all[: x.shape[0]], p_all[x.shape[0] :].view(x.shape[0], 2 * m)
            diff = (pp[:, :m] - pp[:, m:]).view(x.shape[0], m, *([1] * (x.dim() - 1)))
            grad_p = (diff * u).sum(1) / (2 * self.sigma * m)
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
        best_x, best_cost = x.clone(), torch.full((n,), float("inf"))
        best_p, since = torch.zeros(n), torch.zeros(n, dtype=torch.long)
        used, done = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        reason = ["steps"] * n
        active = torch.arange(n)
        grad_evals = 0
        for i in range(self.steps + 1):
            if self.max_queries is not None:
                over = used[active] + per_eval > self.max_queries
                for j in active[over].tolist():
                    reason[j] = "budget"
                active = active[~over]
            if active.numel() == 0:
                break
            ia = active.to(x.device)
            p, cost, grad = self.cost_and_gradient(model, x[ia], k[ia], g)
            p, cost = p.cpu(), cost.cpu()
            used[active] += per_eval
            grad_evals += active.numel() if self.white_box else 0
            better = cost < best_cost[active]
            best_cost[active] = torch.where(better, cost, best_cost[active])
            best_p[active] = torch.where(better, p, best_p[active])
            best_x[ia[better.to(x.device)]] = x[ia[better.to(x.device)]]
            since[active] = torch.where(better, 0, since[active] + 1)
            at_threshold = cost <= self.threshold
            stalled = since[active] >= self.patience
            stop = at_threshold | stalled | (i == self.steps)
            for j in torch.nonzero(stop).flatten().tolist():
                why = "threshold" if at_threshold[j] else "patience" if stalled[j] else "steps"
                reason[int(active[j])] = why
            keep = ~stop
            ia_keep = ia[keep.to(x.device)]
            step = grad[keep.to(x.device)]
            if self.normalize:  # root-mean-square pixel change = step_size, whatever the gradient's scale
                rms = step.flatten(1).norm(dim=1).div(x[0].numel() ** 0.5).clamp_min(1e-30)
                step = step / rms.view(-1, *([1] * (step.dim() - 1)))
            x[ia_keep] = (x[ia_keep] - self.step_size * step).clamp(low, high)
            done[active[keep]] += 1
            active = active[keep]
            if progress is not None:
                progress(i + 1, self.steps + 1)
        recon = _postprocess(best_x, self.postprocess).clamp(low, high)
        return MIFaceResult(
            reconstructions=recon,
            classes=k.cpu(),
            confidence=best_p,
            cost=best_cost,
            steps=done,
            stop_reason=tuple(reason),
            queries=int(used.sum()),
            gradient_evals=grad_evals,
            white_box=self.white_box,
            params=self.params(),
            seed=seed,
        )
