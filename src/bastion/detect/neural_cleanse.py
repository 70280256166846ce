"""Neural Cleanse: reverse-engineer the smallest trigger for every class and flag the outlier.

Wang, Yao, Shan, Li, Viswanath, Zheng & Zhao, "Neural Cleanse: Identifying and Mitigating Backdoor
Attacks in Neural Networks", IEEE S&P 2019.

For each class t, find a mask ``m`` (1, H, W) in [0, 1] and a pattern ``p`` (C, H, W) inside the
model's bounds that send clean inputs to t when stamped, ``x' = (1 - m) * x + m * p``, by minimising
``CE(f(x'), t) + lambda_t * |m|_1``. A backdoor is a shortcut: its target needs a far smaller mask than
any other class, an outlier below the median of the per-class L1 norms (the MAD test of
:func:`bastion.detect.model_scan.flag_outliers`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bastion.attacks.base import check_batch
from bastion.detect.model_scan import ModelScanResult, anomaly_index, flag_outliers
from bastion.errors import DetectorError
from bastion.model import Classifier, as_classifier

__all__ = ["NeuralCleanse"]

Progress = Callable[[int, int], None]


def _check(name: str, value: Any, *, integer: bool = False, above: float = 0.0) -> None:
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or not value > above:
        what = "an integer" if integer else "a number"
        raise DetectorError(f"{name} must be {what} > {above:g}, got {value!r}")


class NeuralCleanse:
    """Trigger reverse engineering for all K classes at once, then the MAD outlier test.

    - Masks and patterns are free tensors squashed by a sigmoid (the mask into [0, 1], the pattern
      into the model's bounds), optimised with Adam (betas 0.5, 0.9, as Wang et al.'s code). All K
      classes run as one batch: each step stamps the same ``batch_size`` random clean inputs with
      every still-running class's trigger, K * ``batch_size`` inputs per forward pass.
    - ``lambda`` adapts per class (Wang et al.): 0 until the trigger reaches
      ``attack_success_threshold`` on ``patience`` checks in a row, then ``init_cost``. A check,
      every ``check_every`` steps, compares the trigger's success on those steps' batches with the
      threshold: ``patience`` successes in a row multiply lambda by ``cost_multiplier`` (smaller
      masks), ``patience`` failures divide it by ``cost_multiplier ** 1.5``. The smallest mask that
      passed a check is kept. A class stops once lambda has moved both ways and its best mask has
      not shrunk by 1% for ``5 * patience`` checks; the scan stops when all have, or after ``steps``.
    - Defaults are sized for a CPU: Wang et al. run up to 1000 epochs of mini-batches of 32 per
      class; 300 steps of 16 per class suffice for 8x8 digits and MNIST-sized BadNets patches.
    - Same ``seed``, same result (initialisation and mini-batches come from one seeded generator).
    """

    name = "neural-cleanse"

    def __init__(
        self,
        *,
        steps: int = 300,
        lr: float = 0.1,
        init_cost: float = 1e-3,
        batch_size: int = 16,
        attack_success_threshold: float = 0.99,
        check_every: int = 5,
        patience: int = 2,
        cost_multiplier: float = 1.5,
        anomaly_threshold: float = 2.0,
        seed: int = 0,
    ) -> None:
        for name, number in {"steps": steps, "batch_size": batch_size, "check_every": check_every}.items():
            _check(name, number, integer=True)
        _check("patience", patience, integer=True)
        _check("seed", seed, integer=True, above=-float("inf"))
        for name, value in {"lr": lr, "init_cost": init_cost, "anomaly_threshold": anomaly_threshold}.items():
            _check(name, value)
        _check("cost_multiplier", cost_multiplier, above=1.0)
        _check("attack_success_threshold", attack_success_threshold)
        if attack_success_threshold > 1:
            raise DetectorError(
                f"attack_success_threshold is a share in (0, 1], got {attack_success_threshold}"
            )
        self.steps, self.lr, self.init_cost, self.batch_size = steps, float(lr), float(init_cost), batch_size
        self.attack_success_threshold = float(attack_success_threshold)
        self.check_every, self.patience, self.cost_multiplier = check_every, patience, float(cost_multiplier)
        self.anomaly_threshold, self.seed = float(anomaly_threshold), seed

    def params(self) -> dict[str, Any]:
        """The hyperparameters, JSON-ready."""
        names = ("steps", "lr", "init_cost", "batch_size", "attack_success_threshold", "check_every")
        return {
            k: getattr(self, k) for k in (*names, "patience", "cost_multiplier", "anomaly_threshold", "seed")
        }

    def scan(
        self, model: Classifier | nn.Module, x_clean: torch.Tensor, *, progress: Progress | None = None
    ) -> ModelScanResult:
        """Reverse-engineer a trigger per class on ``x_clean`` (N, C, H, W): clean inputs inside the
        model's bounds, a few hundred suffice. ``progress(step, steps)`` is called after every step.
        The model and ``x_clean`` are not modified (no gradient reaches the model's parameters)."""
        start = time.perf_counter()
        clf = as_classifier(model)
        check_batch(clf, x_clean, doing="scanning the model")
        if x_clean.dim() != 4:
            raise DetectorError(
                f"Neural Cleanse scans image models: x_clean must be (N, C, H, W), got {tuple(x_clean.shape)}"
            )
        x = x_clean.detach()
        with torch.no_grad():
            k = int(clf.num_classes or clf(x[:1]).shape[1])
        if k < 3:
            raise DetectorError(f"the MAD outlier test needs 3 or more classes, the model has {k}")
        mask, pattern = self._reverse(clf, x, k, progress)
        l1 = mask.flatten(1).sum(1).to("cpu", torch.float64)
        return ModelScanResult(
            method=self.name,
            mask=mask,
            pattern=pattern,
            mask_l1=l1,
            attack_success=_success(clf, x, mask, pattern, 4096),
            anomaly_index=anomaly_index(l1),
            flagged=flag_outliers(l1, self.anomaly_threshold),
            threshold=self.anomaly_threshold,
            bounds=(float(clf.bounds[0]), float(clf.bounds[1])),
            seconds=time.perf_counter() - start,
            params=self.params(),
        )

    def _reverse(
        self, clf: Classifier, x: torch.Tensor, k: int, progress: Progress | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = clf.bounds
        n, c, h, w = x.shape
        dev, dt = x.device, x.dtype
        g = torch.Generator().manual_seed(self.seed)
        # Raw values in [-1, 1]: masks and patterns start mid-range, off the sigmoid's flat tails.
        mask_raw = (2 * torch.rand(k, 1, h, w, generator=g) - 1).to(dev, dt).requires_grad_(True)
        pattern_raw = (2 * torch.rand(k, c, h, w, generator=g) - 1).to(dev, dt).requires_grad_(True)
        opt = torch.optim.Adam([mask_raw, pattern_raw], lr=self.lr, betas=(0.5, 0.9))

        def squash(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.sigmoid(mask_raw[rows]), low + (high - low) * torch.sigmoid(pattern_raw[rows])

        classes = torch.arange(k, device=dev)
        schedule = _CostSchedule(k, self, dev, dt)
        hits = torch.zeros(k, device=dev, dtype=dt)
        best_l1 = torch.full((k,), float("inf"), device=dev, dtype=dt)
        with torch.no_grad():
            best_mask, best_pattern = squash(classes)
        for step in range(1, self.steps + 1):
            act = classes[schedule.active]
            xb = x[torch.randint(n, (min(self.batch_size, n),), generator=g).to(dev)]
            m, p = squash(act)
            logits = clf(_stamp(xb, m, p).flatten(0, 1)).view(act.numel(), xb.shape[0], -1)
            target = act.repeat_interleave(xb.shape[0])
            ce = nn.functional.cross_entropy(logits.flatten(0, 1), target, reduction="none")
            loss = (ce.view(act.numel(), -1).mean(1) + schedule.cost[act] * m.flatten(1).sum(1)).sum()
            # autograd.grad, not backward(): no gradient ever lands on the model's parameters.
            mask_raw.grad, pattern_raw.grad = torch.autograd.grad(loss, [mask_raw, pattern_raw])
            opt.step()
            with torch.no_grad():
                hits[act] += (logits.argmax(2) == act.unsqueeze(1)).to(dt).mean(1)
            if progress is not None:
                progress(step, self.steps)
            if step % self.check_every:
                continue
            with torch.no_grad():
                ok = schedule.active & (hits / self.check_every >= self.attack_success_threshold)
                hits.zero_()
                m_all, p_all = squash(classes)
                l1 = m_all.flatten(1).sum(1)
                better = ok & (l1 < best_l1)
                schedule.update(ok, shrunk=better & (l1 < 0.99 * best_l1))
                best_l1 = torch.where(better, l1, best_l1)
                best_mask[better], best_pattern[better] = m_all[better], p_all[better]
                if not bool(schedule.active.any()):
                    break
        with torch.no_grad():
            # A class that never passed a check reports its last trigger (and its lower success).
            never = torch.isinf(best_l1)
            m_all, p_all = squash(classes)
            best_mask[never], best_pattern[never] = m_all[never], p_all[never]
        return best_mask.detach(), best_pattern.detach()

    def __repr__(self) -> str:
        return f"NeuralCleanse(steps={self.steps}, batch_size={self.batch_size}, seed={self.seed})"


class _CostSchedule:
    """Wang et al.'s per-class lambda (``cost``) and early stop, as (K,) tensors; see NeuralCleanse."""

    def __init__(self, k: int, nc: NeuralCleanse, device: torch.device, dtype: torch.dtype) -> None:
        self.nc = nc
        self.cost = torch.zeros(k, device=device, dtype=dtype)  # 0 until the trigger first succeeds
        self.up, self.down, self.stale = (torch.zeros(k, dtype=torch.long, device=device) for _ in range(3))
        self.raised, self.lowered, self.active = (
            torch.full((k,), fill, dtype=torch.bool, device=device) for fill in (False, False, True)
        )

    def update(self, ok: torch.Tensor, *, shrunk: torch.Tensor) -> None:
        """One check: ``ok`` (K,) the trigger succeeded; ``shrunk`` (K,) its best mask shrank by 1%."""
        patience, factor = self.nc.patience, self.nc.cost_multiplier
        self.stale = torch.where(shrunk, 0, self.stale + 1)
        self.up, self.down = torch.where(ok, self.up + 1, 0), torch.where(ok, 0, self.down + 1)
        start = (self.cost == 0) & (self.up >= patience)
        self.cost = torch.where(start, self.nc.init_cost, self.cost)
        self.up = torch.where(start, 0, self.up)
        go_up = (self.cost > 0) & (self.up >= patience)
        go_down = (self.cost > 0) & (self.down >= patience)
        self.cost = torch.where(
            go_up, self.cost * factor, torch.where(go_down, self.cost / factor**1.5, self.cost)
        )
        self.up, self.down = torch.where(go_up, 0, self.up), torch.where(go_down, 0, self.down)
        self.raised, self.lowered = self.raised | go_up, self.lowered | go_down
        self.active &= ~(self.raised & self.lowered & (self.stale >= 5 * patience))


def _stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Every input ``x`` (B, C, H, W) stamped with every trigger (A, ...): (A, B, C, H, W)."""
    return (1 - mask).unsqueeze(1) * x.unsqueeze(0) + (mask * pattern).unsqueeze(1)


@torch.no_grad()
def _success(
    clf: Classifier, x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor, chunk: int
) -> torch.Tensor:
    """(K,) float64: the share of ``x`` each class's trigger sends to its class, ``chunk`` stamped
    inputs per forward pass."""
    k = mask.shape[0]
    hits = torch.zeros(k, dtype=torch.float64)
    step = max(1, chunk // k)
    for i in range(0, x.shape[0], step):
        pred = clf(_stamp(x[i : i + step], mask, pattern).flatten(0, 1)).argmax(1).view(k, -1)
        hits += (pred == torch.arange(k, device=pred.device).unsqueeze(1)).sum(1).to("cpu", torch.float64)
    return hits / x.shape[0]
