"""FAB: the Fast Adaptive Boundary attack, minimum norm, untargeted and targeted (FAB-T), linf and l2.

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary attack", ICML 2020.
Each step linearises the classifier at the iterate, picks the hyperplane of the closest decision boundary
(untargeted: the class ``s`` minimising ``|f_s - f_y| / ||grad (f_s - f_y)||_dual``; targeted: the
target), and projects both the iterate and the original input onto that hyperplane inside the bounds.
The next iterate is a convex combination of the two overshot projections, weighted towards the original
input by ``alpha = min(||d_iter|| / (||d_iter|| + ||d_orig||), alpha_max)``, which keeps it close to the
input. Whenever an iterate is adversarial it is recorded (if smaller than the best) and pulled back
towards the input by ``beta`` (the "backward step"). Restarts start from a random point in the ball of
half the best norm found (or half of epsilon).

``fab-t`` is AutoAttack's FAB-T: without explicit ``targets`` it runs one targeted attack per class among
the ``n_target_classes`` highest-scoring wrong classes (on the clean input) against the true class, each
on the inputs still unbroken; success stays untargeted. Under a finite epsilon an input stops as soon as
an adversarial within epsilon is found (all the budget asks); under ``epsilon=inf`` every step refines
the smallest adversarial.
"""

from __future__ import annotations

import math

import torch

from bastion.attacks.base import Attack, check_positive, differentiable, is_success
from bastion.attacks.evasion._targets import target_rounds
from bastion.errors import AttackError
from bastion.model import Classifier
from bastion.rng import Randomness, normal, rows, uniform
from bastion.threat import Norm, ThreatModel

__all__ = ["FAB", "project_onto_hyperplane"]


def project_onto_hyperplane(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, low: float, high: float, linf: bool
) -> torch.Tensor:
    """The smallest ``delta`` (N, D) (linf or l2) with ``<w, delta> + b = 0``, ``low <= x + delta <= high``.

    The minimiser is ``clip(mu * d, low - x, high - x)`` with ``d = sign(w)`` (linf) or ``w`` (l2), pointed
    so that ``<w, d>`` has the sign of ``-b``; ``<w, delta(mu)>`` is piecewise linear and increasing in
    ``mu``, so sorting the coordinates' saturation points gives ``mu`` exactly. When the bounds make the
    hyperplane unreachable, every coordinate moves as far as it can towards it.
    """
    side = torch.where(b > 0, -1.0, 1.0).to(x.dtype)[:, None]
    d = (w.sign() if linf else w) * side
    room = torch.where(d > 0, high - x, x - low)  # how far each coordinate can move along d
    a = d.abs()
    t = torch.where(a > 0, room / a.clamp_min(1e-30), torch.zeros_like(a))  # mu at which it saturates
    t, order = t.sort(dim=1)
    wa, wr = (w.abs() * a).gather(1, order), (w.abs() * room).gather(1, order)
    # <w, delta(mu)> * side at mu = t_k: the saturated coordinates give |w| room, the others mu |w| |d|
    below = wr.cumsum(1) - wr
    rest = wa.sum(1, keepdim=True) - (wa.cumsum(1) - wa)
    reach = below + t * rest
    need = b.abs()[:, None]
    k = (reach < need).sum(1, keepdim=True).clamp(max=t.shape[1] - 1)  # first breakpoint that gets there
    mu = (need - below.gather(1, k)) / rest.gather(1, k).clamp_min(1e-30)
    mu = torch.where(reach[:, -1:] < need, t[:, -1:], mu.clamp_min(0))
    return torch.minimum(torch.maximum(mu * d, low - x), high - x)


def _norm(t: torch.Tensor, linf: bool) -> torch.Tensor:
    return t.abs().amax(1) if linf else t.norm(dim=1)


def _sel(t: torch.Tensor | None, i: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[i]


def _random_point(x: torch.Tensor, radius: torch.Tensor, linf: bool, g: Randomness) -> torch.Tensor:
    """A random point of the ball of per-input ``radius`` (N,) around ``x`` (N, D), uniform in volume."""
    if linf:
        return x + radius[:, None] * (2 * uniform(g, x.shape, like=x) - 1)
    u = normal(g, x.shape, like=x)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    scale = uniform(g, (x.shape[0],), like=x) ** (1.0 / x.shape[1])
    return x + u * (radius * scale)[:, None]


class FAB(Attack):
    """FAB (``targeted=False``) or FAB-T (``targeted=True``); minimum norm.

    - ``steps`` per restart (and per target class); ``restarts``.
    - ``alpha_max`` (0.1), ``eta`` (overshoot, 1.05), ``beta`` (backward step, 0.9): the paper's values.
    - ``n_target_classes``: FAB-T's classes (AutoAttack: 9).

    Untargeted FAB differentiates every logit at each step (``num_classes`` backward passes); FAB-T one.
    """

    name = "fab"
    norms = frozenset({Norm.LINF, Norm.L2})
    access = "gradient"
    minimum_norm = True

    def __init__(
        self,
        targeted: bool = False,
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
    ) -> None:
        for name, value in (("steps", steps), ("restarts", restarts), ("n_target_classes", n_target_classes)):
            check_positive(name, value, integer=True)
        for name, frac in (("alpha_max", alpha_max), ("beta", beta)):
            if not (isinstance(frac, int | float) and 0 < frac <= 1):
                raise AttackError(f"{name} must be in (0, 1], got {frac!r}")
        if not (isinstance(eta, int | float) and 1 <= eta < math.inf):
            raise AttackError(f"eta (the overshoot) must be >= 1, got {eta!r}")
        self.targeted, self.steps, self.restarts = bool(targeted), int(steps), int(restarts)
        self.n_target_classes = int(n_target_classes)
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)

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
        # rounds of (class whose hyperplane to cross or None = the closest one, success target)
        rounds = target_rounds(model, x, targets, self.targeted, self.n_target_classes)
        best = x.clone()
        best_norm = torch.full((x.shape[0],), math.inf, device=x.device, dtype=x.dtype)
        for cross, success_target in rounds:
            for r in range(self.restarts):
                # under a finite budget only inputs without an adversarial inside it go on
                todo = (best_norm > threat.epsilon).nonzero().flatten()
                if threat.unbounded:
                    todo = torch.arange(x.shape[0], device=x.device)
                if todo.numel() == 0:
                    return best
                adv, norm = self._once(
                    model,
                    x[todo],
                    y[todo],
                    _sel(cross, todo),
                    _sel(success_target, todo),
                    threat,
                    best_norm[todo],
                    r,
                    rows(generator, todo),
                )
                better = norm < best_norm[todo]
                best[todo[better]], best_norm[todo[better]] = adv[better], norm[better]
        # an adversarial beyond epsilon is no answer under this threat: report the input
        return torch.where((best_norm <= threat.epsilon).view(-1, *[1] * (x.dim() - 1)), best, x)

    def _once(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        cross: torch.Tensor | None,
        target: torch.Tensor | None,
        threat: ThreatModel,
        known: torch.Tensor,
        restart: int,
        generator: Randomness,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One run from ``x`` (restart 0) or a random start; (smallest adversarial, its norm or inf)."""
        linf, (low, high), shape = threat.norm is Norm.LINF, threat.bounds, x.shape
        x0 = x.flatten(1)
        best, best_norm = x0.clone(), torch.full_like(known, math.inf)
        xk = x0.clone()
        if restart > 0:
            # half the smallest adversarial known (or of epsilon): the paper's restart radius
            radius = known.clamp(max=threat.epsilon) / 2
            radius = torch.where(radius.isfinite(), radius, torch.zeros_like(radius))
            xk = _random_point(x0, radius, linf, generator).clamp(low, high)
        idx = torch.arange(x.shape[0], device=x.device)  # the inputs still being refined
        for step in range(self.steps + 1):
            logits, w, b = self._linearise(model, xk, y, cross, target, shape, linf)
            adv = is_success(logits, y, target)
            dist = _norm(xk - x0, linf)
            better = adv & (dist < best_norm[idx])
            best[idx[better]], best_norm[idx[better]] = xk[better], dist[better]
            if step == self.steps:  # the last step only scores
                break
            if not threat.unbounded:  # an adversarial inside the budget is all a finite threat asks
                keep = ~(best_norm[idx] <= threat.epsilon)
                if not bool(keep.all()):
                    idx, xk, x0, y, adv, w, b = (
                        idx[keep],
                        xk[keep],
                        x0[keep],
                        y[keep],
                        adv[keep],
                        w[keep],
                        b[keep],
                    )
                    cross = None if cross is None else cross[keep]
                    target = None if target is None else target[keep]
                    if idx.numel() == 0:
                        break
            if bool(adv.any()):  # backward step towards the input, linearised again there
                sub = adv.nonzero().flatten()
                xk[sub] = (1 - self.beta) * x0[sub] + self.beta * xk[sub]
                _, w[sub], b[sub] = self._linearise(
                    model, xk[sub], y[sub], _sel(cross, sub), _sel(target, sub), shape, linf
                )
            d_iter = project_onto_hyperplane(xk, w, b, low, high, linf)
            d_orig = project_onto_hyperplane(x0, w, b + (w * (x0 - xk)).sum(1), low, high, linf)
            n_iter, n_orig = _norm(d_iter, linf), _norm(d_orig, linf)
            alpha = (n_iter / (n_iter + n_orig).clamp_min(1e-12)).clamp(max=self.alpha_max)[:, None]
            xk = ((1 - alpha) * (xk + self.eta * d_iter) + alpha * (x0 + self.eta * d_orig)).clamp(low, high)
        return best.view(shape), best_norm

    @staticmethod
    def _linearise(
        model: Classifier,
        xk: torch.Tensor,
        y: torch.Tensor,
        cross: torch.Tensor | None,
        target: torch.Tensor | None,
        shape: torch.Size,
        linf: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (n, K) at ``xk`` (n, D) and the hyperplane ``(w (n, D), b (n,))`` of ``g = f_s - f_o``
        linearised there: ``g(z) ~ <w, z - xk> + b``, crossed where ``g >= 0``.

        ``s`` is ``cross``, or the class of the closest linearised boundary; ``o`` is the true class, or
        for explicit targets the strongest class other than the target.
        """
        xr = xk.detach().view(-1, *shape[1:]).requires_grad_(True)
        logits = differentiable(model(xr))
        rows = torch.arange(xk.shape[0], device=xk.device)
        if cross is not None:
            other = y
            if target is not None:
                other = logits.detach().scatter(1, target[:, None], -math.inf).argmax(1)
            g = logits[rows, cross] - logits[rows, other]
            (w,) = torch.autograd.grad(g.sum(), xr)
            return logits.detach(), w.flatten(1), g.detach()
        k = logits.shape[1]
        gs, ws = [], []
        for c in range(k):  # the Jacobian row by row: one backward pass per class
            g = logits[:, c] - logits[rows, y]
            (wc,) = torch.autograd.grad(g.sum(), xr, retain_graph=c < k - 1)
            gs.append(g.detach())
            ws.append(wc.flatten(1))
        g_all, w_all = torch.stack(gs, 1), torch.stack(ws, 1)  # (n, K), (n, K, D)
        dual = w_all.abs().sum(2) if linf else w_all.norm(dim=2)  # the dual norm of the step's norm
        closeness = g_all.abs() / dual.clamp_min(1e-12)
        s = closeness.scatter(1, y[:, None], math.inf).argmin(1)
        return logits.detach(), w_all[rows, s], g_all[rows, s]
