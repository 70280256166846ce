"""Check (``violations``/``satisfied``) and enforce (``repair``) a :class:`TabularThreatModel`.

``satisfied`` re-derives every constraint from the threat model without calling ``repair``, so a bug
in the repair cannot certify its own output: the attack base class counts a record only when
``satisfied`` agrees.
"""

from __future__ import annotations

import torch

from bastion.errors import DataError
from bastion.tabular.threat import TabularThreatModel

__all__ = ["CONSTRAINTS", "feasible_box", "repair", "satisfied", "violations"]

REL = 1e-12  # relative slack: float64 rounding only, so a change of 1 on a value of 1e6 still counts
CONSTRAINTS = (
    "finite",
    "immutable",
    "direction",
    "max_change",
    "range",
    "integrality",
    "category",
    "budget",
    "relation",
)


def _check(
    x_adv: torch.Tensor, x: torch.Tensor, threat: TabularThreatModel
) -> tuple[torch.Tensor, torch.Tensor]:
    d = len(threat.schema)
    if x.dim() != 2 or x.shape[1] != d or x_adv.shape != x.shape:
        raise DataError(
            f"x and x_adv must both have shape (N, {d}), got {tuple(x.shape)} and {tuple(x_adv.shape)}"
        )
    return x_adv.detach().to(torch.float64), x.detach().to(torch.float64)


def _record_range(x: torch.Tensor, threat: TabularThreatModel) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = threat.range_vectors(x.device)
    return torch.minimum(lo, x), torch.maximum(hi, x)


def _relation_residual(x: torch.Tensor, threat: TabularThreatModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(lhs - rhs (N, R), scale (N, R)) for the schema's relations."""
    a, rhs = threat.relation_matrix(x.device)
    lhs = x @ a.T
    return lhs - rhs, 1.0 + rhs.abs() + x.abs() @ a.abs().T


def violations(x_adv: torch.Tensor, x: torch.Tensor, threat: TabularThreatModel) -> dict[str, torch.Tensor]:
    """For each constraint in :data:`CONSTRAINTS`, an (N,) bool: True where ``x_adv`` breaks it."""
    x_adv, x = _check(x_adv, x, threat)
    tol = threat.tolerance
    n = x.shape[0]
    finite = torch.isfinite(x_adv)
    xa = torch.where(finite, x_adv, x)  # judge the rest on finite numbers; 'finite' reports the NaNs
    delta = xa - x
    slack = tol + REL * x.abs()  # absolute, plus float64 rounding on large values (1e6 money amounts)
    moved = delta.abs() > slack
    integral, cat = threat.kind_masks(x.device)
    out = {"finite": ~finite.all(dim=1)}
    out["immutable"] = (moved & ~threat.movable(x.device)).any(dim=1)
    sign = threat.direction_vector(x.device)
    out["direction"] = ((sign * delta) < -slack).any(dim=1)
    dist = torch.where(cat, moved.to(torch.float64), delta.abs())
    out["max_change"] = (dist > threat.max_change_vector(x.device) + slack).any(dim=1)
    lo, hi = _record_range(x, threat)
    out["range"] = ((xa < lo - slack) | (xa > hi + slack)).any(dim=1)
    out["integrality"] = (integral & ((xa - xa.round()).abs() > tol)).any(dim=1)
    ncat = torch.tensor([max(len(f.categories), 1) for f in threat.schema.features], device=x.device)
    coded = torch.tensor([f.discrete_codes for f in threat.schema.features], device=x.device)
    idx = xa.round()
    out["category"] = (coded & ((idx < 0) | (idx > ncat - 1) | ((xa - idx).abs() > tol))).any(dim=1)
    if threat.budget is None:
        out["budget"] = torch.zeros(n, dtype=torch.bool, device=x.device)
    else:
        cost = (dist * threat.cost_weights(x.device)).sum(dim=1)
        out["budget"] = cost > threat.budget * (1 + 1e-9) + tol
    resid, scale = _relation_residual(xa, threat)
    ops = [r.op for r in (threat.schema.relations if threat.relations else ())]
    eq = torch.tensor([op == "==" for op in ops], dtype=torch.bool, device=x.device)
    slack_r = tol + REL * scale
    bad = torch.where(eq, resid.abs() > slack_r, resid > slack_r)
    out["relation"] = bad.any(dim=1) if bad.numel() else torch.zeros(n, dtype=torch.bool, device=x.device)
    return out


def satisfied(x_adv: torch.Tensor, x: torch.Tensor, threat: TabularThreatModel) -> torch.Tensor:
    """(N,) bool: ``x_adv`` meets every constraint of ``threat`` relative to the originals ``x``."""
    v = violations(x_adv, x, threat)
    return ~torch.stack(list(v.values()), dim=1).any(dim=1)


def feasible_box(x: torch.Tensor, threat: TabularThreatModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high), each (N, D) float64: the interval each feature of each record may take, combining
    mutability, direction, max_change and range (integral features: whole-number ends). Contains ``x``."""
    x = x.detach().to(torch.float64)
    integral, _ = threat.kind_masks(x.device)
    m = threat.max_change_vector(x.device)
    sign = threat.direction_vector(x.device)
    lo_r, hi_r = _record_range(x, threat)
    low = torch.maximum(lo_r, torch.where(sign > 0, x, x - m))
    high = torch.minimum(hi_r, torch.where(sign < 0, x, x + m))
    low, high = torch.minimum(low, x), torch.maximum(high, x)
    low = torch.where(integral, low.ceil(), low)
    high = torch.where(integral, high.floor(), high)
    return low, high


def repair(x_adv: torch.Tensor, x: torch.Tensor, threat: TabularThreatModel) -> torch.Tensor:
    """Project candidates ``x_adv`` (N, D) onto the constraints; returns a new float64 tensor.

    Order: restore frozen features; clip to direction, per-feature change and range; round integral
    features inside that interval (toward the original, so rounding never leaves it); snap categories
    to valid indices; restore each linear relation by moving its ``adjust`` feature (reverting the
    relation's features when that fails); shrink the change onto the total budget (categorical changes
    are reverted first if they alone exceed it; integral deltas truncate toward zero), which keeps the
    relations except for truncation, so they are restored once more. A record that
    still breaks a constraint falls back to its original (which is valid when the original is).
    """
    x_adv, x = _check(x_adv, x, threat)
    dev = x.device
    integral, cat = threat.kind_masks(dev)
    movable = threat.movable(dev)
    out = torch.where(torch.isfinite(x_adv) & movable, x_adv, x)
    low, high = feasible_box(x, threat)
    out = torch.minimum(torch.maximum(torch.where(integral, out.round(), out), low), high)
    relations = bool(threat.relations and threat.schema.relations)
    if relations:
        out = _onto_relations(out, x, threat, integral, low, high)
    if threat.budget is not None:
        # shrinking the change toward the original keeps linear relations (both ends satisfy them),
        # so the adjusted features' cost is paid for here; only integer truncation can break one again
        out = _onto_budget(out, x, threat.budget, threat.cost_weights(dev), integral, cat)
        if relations:
            out = _onto_relations(out, x, threat, integral, low, high)
    ok = satisfied(out, x, threat)
    return torch.where(ok.unsqueeze(1), out, x)


def _onto_budget(
    out: torch.Tensor,
    x: torch.Tensor,
    budget: float,
    w: torch.Tensor,
    integral: torch.Tensor,
    cat: torch.Tensor,
) -> torch.Tensor:
    changed = (out - x).abs() > 0.5
    cat_cost = (cat & changed).to(torch.float64).mul(w).sum(dim=1, keepdim=True)
    over = cat_cost > budget
    out = torch.where(over & cat, x, out)
    cat_cost = torch.where(over, torch.zeros_like(cat_cost), cat_cost)
    delta = torch.where(cat, torch.zeros_like(out), out - x)
    scalar_cost = (delta.abs() * w).sum(dim=1, keepdim=True)
    left = (budget - cat_cost).clamp_min(0.0)
    factor = torch.where(scalar_cost > left, left / scalar_cost.clamp_min(1e-300), torch.ones_like(left))
    delta = delta * factor
    delta = torch.where(integral, delta.trunc(), delta)
    return torch.where(cat, out, x + delta)


def _onto_relations(
    out: torch.Tensor,
    x: torch.Tensor,
    threat: TabularThreatModel,
    integral: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
) -> torch.Tensor:
    schema, movable = threat.schema, threat.movable(x.device).tolist()
    tol = threat.tolerance
    for _ in range(3):  # relations may share features; a few passes settle them
        for rel in schema.relations:
            cols = [schema.index(n) for n in rel.coefficients]
            coef = torch.tensor(list(rel.coefficients.values()), dtype=torch.float64, device=x.device)
            lhs = out[:, cols] @ coef
            resid = lhs - rel.rhs
            scale = 1.0 + abs(rel.rhs) + out[:, cols].abs() @ coef.abs()
            bad = resid.abs() > tol + REL * scale if rel.op == "==" else resid > tol + REL * scale
            if not bool(bad.any()):
                continue
            k = (
                schema.index(rel.adjust)
                if rel.adjust
                else next((c for c in reversed(cols) if movable[c]), cols[-1])
            )
            a_k = rel.coefficients[schema.features[k].name]
            target = out[:, k] - resid / a_k
            if bool(integral[k]):
                # '==' needs an exact integer; '<=' rounds toward the feasible side
                target = target.round() if rel.op == "==" else (target.floor() if a_k > 0 else target.ceil())
            target = torch.minimum(torch.maximum(target, low[:, k]), high[:, k]) if movable[k] else x[:, k]
            fixed = out.clone()
            fixed[:, k] = target
            resid2 = fixed[:, cols] @ coef - rel.rhs
            still = resid2.abs() > tol + REL * scale if rel.op == "==" else resid2 > tol + REL * scale
            revert = fixed.clone()
            revert[:, cols] = x[:, cols]
            out = torch.where(bad.unsqueeze(1), torch.where(still.unsqueeze(1), revert, fixed), out)
    return out
