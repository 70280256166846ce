"""Auto-PGD: step-size-free PGD with momentum (APGD-CE, APGD-DLR, APGD-T).

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks", ICML 2020, Algorithm 1; the l2 version follows the authors' later code (normalised-gradient
steps of size 2 * epsilon). The step size starts at 2 * epsilon and is halved at checkpoints where the
loss rose in fewer than ``rho`` of the steps since the last checkpoint (condition 1), or where neither the
step size nor the best loss changed since then (condition 2); a halving restarts from the best point.
"""

from __future__ import annotations

import math

import torch

from bastion.attacks.base import Attack, check_positive, is_success
from bastion.attacks.evasion._targets import target_rounds
from bastion.attacks.evasion.pgd import ascent_direction, effective_epsilon, random_start
from bastion.attacks.gradients import loss_and_grad
from bastion.attacks.losses import get_loss
from bastion.errors import AttackError
from bastion.model import Classifier
from bastion.rng import Randomness, rows
from bastion.threat import Norm, ThreatModel

__all__ = ["APGD", "checkpoints"]

_MOMENTUM = 0.75


def checkpoints(steps: int) -> list[int]:
    """Checkpoint iterations w_j = ceil(p_j * steps) in (0, steps).

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).
    """
    marks, p_prev, p = [], 0.0, 0.22
    while p <= 1.0:
        marks.append(math.ceil(p * steps - 1e-9))  # the tolerance absorbs float error in the p_j sums
        p_prev, p = p, p + max(p - p_prev - 0.03, 0.06)
    return sorted({m for m in marks if 0 < m < steps})


def _pick(keep: torch.Tensor, *ts: torch.Tensor) -> list[torch.Tensor]:
    return [t[keep] for t in ts]


def _pick_opt(keep: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t[keep]


class APGD(Attack):
    """APGD with ``loss`` "ce" or "dlr"; ``steps + 1`` gradient evaluations per sample and restart.

    Returns each sample's first successful iterate, or the highest-loss point when none succeeds.
    Called with ``targets`` it attacks them with the targeted loss. ``targeted=True`` without targets is
    AutoAttack's APGD-T: success stays untargeted, but each round targets the next-highest clean logit
    (2nd ... ``n_target_classes + 1``-th) with the targeted version of ``loss``, on samples still unbroken.
    """

    name = "apgd"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "gradient"

    def __init__(
        self,
        loss: str = "ce",
        targeted: bool = False,
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        rho: float = 0.75,
        eot_samples: int = 1,
    ) -> None:
        if loss not in ("ce", "dlr"):
            raise AttackError(f"APGD loss must be 'ce' or 'dlr', got {loss!r}")
        for name, value in (("steps", steps), ("restarts", restarts), ("n_target_classes", n_target_classes)):
            check_positive(name, value, integer=True)
        check_positive("eot_samples", eot_samples, integer=True)
        if not (isinstance(rho, int | float) and 0 < rho <= 1):
            raise AttackError(f"rho must be in (0, 1], got {rho!r}")
        self._loss_fn = get_loss(loss)
        self.loss, self.targeted, self.rho = loss, bool(targeted), float(rho)
        self.steps, self.restarts, self.eot_samples = int(steps), int(restarts), int(eot_samples)
        self.n_target_classes = int(n_target_classes)

    def _run(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        targets: torch.Tensor | None,
        generator: Randomness,
    ) -> torch.Tensor:
        rounds = target_rounds(model, x, targets, self.targeted, self.n_target_classes)
        eps = effective_epsilon(threat, x)
        x_adv = x.clone()
        best = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=x.dtype)
        todo = torch.arange(x.shape[0], device=x.device)
        for loss_targets, success_targets in rounds:
            for _ in range(self.restarts):
                if todo.numel() == 0:
                    return x_adv
                lt, st = _pick_opt(todo, loss_targets), _pick_opt(todo, success_targets)
                x_r, fooled, loss_r = self._once(
                    model, x[todo], y[todo], threat, eps, lt, st, rows(generator, todo)
                )
                take = fooled | (loss_r > best[todo])
                x_adv[todo[take]], best[todo[take]] = x_r[take], loss_r[take]
                todo = todo[~fooled]
        return x_adv

    def _grad(
        self,
        model: Classifier,
        xk: torch.Tensor,
        y: torch.Tensor,
        lt: torch.Tensor | None,
        st: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss (N,), grad, fooled (N,)) at ``xk``; success read off the gradient pass's logits."""
        loss, grad, logits = loss_and_grad(
            model, xk, y, self._loss_fn, targets=lt, eot_samples=self.eot_samples
        )
        return loss, grad, is_success(logits, y, st)

    def _once(
        self,
        model: Classifier,
        x0: torch.Tensor,
        y0: torch.Tensor,
        threat: ThreatModel,
        eps: float,
        lt: torch.Tensor | None,
        st: torch.Tensor | None,
        generator: Randomness,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One APGD run; returns (x (N, ...), fooled (N,), best loss (N,))."""
        n, view = x0.shape[0], (-1,) + (1,) * (x0.dim() - 1)
        out_x, out_loss = x0.clone(), torch.full((n,), -math.inf, device=x0.device, dtype=x0.dtype)
        out_fooled = torch.zeros(n, dtype=torch.bool, device=x0.device)
        idx = torch.arange(n, device=x0.device)
        xk = random_start(threat, x0, eps, generator)
        loss, grad, found = self._grad(model, xk, y0, lt, st)
        x_prev, x_found, loss_prev = xk, xk.clone(), loss
        x_best, loss_best, grad_best = xk.clone(), loss.clone(), grad.clone()
        eta = torch.full((n,), 2 * eps, device=x0.device, dtype=x0.dtype).view(view)
        increases = torch.zeros(n, device=x0.device)
        best_at_check, reduced = loss_best.clone(), torch.zeros(n, dtype=torch.bool, device=x0.device)
        marks, last_mark = set(checkpoints(self.steps)), 0
        for k in range(1, self.steps + 1):
            z = threat.project(x0, xk + eta * ascent_direction(grad, threat.norm))
            a = 1.0 if k == 1 else _MOMENTUM
            x_prev, xk = xk, threat.project(x0, xk + a * (z - xk) + (1 - a) * (xk - x_prev))
            loss, grad, fooled = self._grad(model, xk, y0, lt, st)
            x_found = torch.where((fooled & ~found).view(view), xk, x_found)
            found = found | fooled
            increases += (loss > loss_prev).float()
            loss_prev = loss
            up = loss > loss_best
            x_best, grad_best = (
                torch.where(up.view(view), xk, x_best),
                torch.where(up.view(view), grad, grad_best),
            )
            loss_best = torch.where(up, loss, loss_best)
            if k in marks:
                halve = (increases < self.rho * (k - last_mark)) | (~reduced & (loss_best <= best_at_check))
                eta = torch.where(halve.view(view), eta / 2, eta)
                xk, grad = (
                    torch.where(halve.view(view), x_best, xk),
                    torch.where(halve.view(view), grad_best, grad),
                )
                reduced, best_at_check, last_mark = halve, loss_best.clone(), k
                increases.zero_()
            n_found = int(found.sum())
            # Drop fooled samples (their first adversarial is all we return) once they are a tenth of
            # the batch, or at a checkpoint: every update is per sample, so the rest run unchanged.
            if n_found and (10 * n_found >= idx.numel() or k in marks):
                out_x[idx[found]], out_fooled[idx[found]] = x_found[found], True
                keep = ~found
                idx, x0, y0, xk, x_prev, grad, eta, x_best, loss_best, grad_best = _pick(
                    keep, idx, x0, y0, xk, x_prev, grad, eta, x_best, loss_best, grad_best
                )
                loss_prev, increases, best_at_check, reduced, x_found, found = _pick(
                    keep, loss_prev, increases, best_at_check, reduced, x_found, found
                )
                lt, st = _pick_opt(keep, lt), _pick_opt(keep, st)
                if idx.numel() == 0:
                    return out_x, out_fooled, out_loss
        out_x[idx] = torch.where(found.view(view), x_found, x_best)
        out_fooled[idx], out_loss[idx] = found, loss_best
        return out_x, out_fooled, out_loss
