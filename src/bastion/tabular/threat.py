"""The tabular threat model: what an attacker may change in a record, and by how much. One value.

A record ``x_adv`` is valid for original ``x`` when every constraint holds (checked by
:func:`bastion.tabular.satisfied`):

* **mutability**: only ``mutable`` features change (default: every feature not ``immutable``);
* **per-feature change**: ``|x_adv_j - x_j| <= max_change_j`` in the feature's own units (ordinal:
  levels; categorical: a change counts 1, so ``max_change < 1`` freezes it); ``max_change`` here
  overrides the schema's ``Feature.max_change``;
* **direction**: features marked ``increase``/``decrease`` move only that way;
* **range**: inside the feature's ``[low, high]``, widened per record to include the original value
  (a record already outside the range is not the attacker's doing);
* **integrality** of integer features and of ordinal/categorical indices, which must be valid codes;
* **total budget** (optional): ``sum_j cost_j * |x_adv_j - x_j| / (high_j - low_j)`` over scalar
  features plus ``cost_j`` per changed categorical feature must not exceed ``budget``: a weighted L1
  in range-normalised units, so 1.0 moves one unit-cost feature across its whole range (a scalar
  feature with a budget must have a finite range);
* **linear relations** of the schema (when ``relations`` is True).

``tolerance`` is an absolute slack in each feature's units (plus 1e-12 relative, for float rounding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from bastion.errors import ThreatModelError
from bastion.tabular.schema import TabularSchema

__all__ = ["TabularThreatModel"]


@dataclass(frozen=True)
class TabularThreatModel:
    """Which features may move and how far; see the module docstring for the exact constraints."""

    schema: TabularSchema
    mutable: tuple[str, ...] | None = None
    max_change: Mapping[str, float] = field(default_factory=dict)
    budget: float | None = None
    relations: bool = True
    tolerance: float = 1e-6

    def __post_init__(self) -> None:
        if not isinstance(self.schema, TabularSchema):
            raise ThreatModelError(f"schema must be a TabularSchema, got {type(self.schema).__name__}")
        names = set(self.schema.names)
        if self.mutable is not None:
            object.__setattr__(self, "mutable", tuple(self.mutable))
            for n in self.mutable:
                if n not in names:
                    raise ThreatModelError(f"mutable feature {n!r} is not in the schema")
                if self.schema.feature(n).immutable:
                    raise ThreatModelError(
                        f"feature {n!r} is immutable in the schema; use "
                        f"schema.updated({n!r}, immutable=False) if it really may change"
                    )
        mc = {}
        for n, v in dict(self.max_change).items():
            if n not in names:
                raise ThreatModelError(
                    f"max_change names {n!r}, not a feature; features: {', '.join(sorted(names))}"
                )
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ThreatModelError(f"max_change[{n!r}] must be a number >= 0, got {v!r}")
            mc[n] = float(v)
        object.__setattr__(self, "max_change", MappingProxyType(mc))
        if self.budget is not None:
            if not (math.isfinite(self.budget) and self.budget >= 0):
                raise ThreatModelError(f"budget must be >= 0 or None, got {self.budget!r}")
            for j, f in enumerate(self.schema.features):
                if (
                    bool(self.movable()[j])
                    and f.kind in ("numeric", "integer")
                    and (f.low is None or f.high is None or f.high <= f.low)
                ):
                    raise ThreatModelError(
                        f"a total budget is in range-normalised units but feature {f.name!r} has no range; "
                        f"give it low/high in the schema or freeze it"
                    )
        if not (self.tolerance >= 0 and math.isfinite(self.tolerance)):
            raise ThreatModelError(f"tolerance must be >= 0, got {self.tolerance!r}")

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description (for reports): the schema's name and every setting."""
        return {
            "schema": self.schema.name,
            "mutable": [n for n, ok in zip(self.schema.names, self.movable().tolist(), strict=True) if ok],
            "max_change": dict(self.max_change),
            "budget": self.budget,
            "relations": [str(r) for r in self.schema.relations] if self.relations else [],
            "tolerance": self.tolerance,
        }

    # -- per-feature vectors (D,), float64 / bool ----------------------------------------------------
    def movable(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(D,) bool: features the attacker may change."""
        allowed = set(self.mutable) if self.mutable is not None else None
        out = []
        for f in self.schema.features:
            ok = not f.immutable and (allowed is None or f.name in allowed)
            m = self.max_change.get(f.name, f.max_change)
            if f.kind == "categorical" and m is not None and m < 1:
                ok = False
            if m is not None and m == 0:
                ok = False
            out.append(ok)
        return torch.tensor(out, dtype=torch.bool, device=device)

    def max_change_vector(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(D,) float64 limit on each feature's change (own units, categorical: 1 per change); inf if none."""
        out = []
        for f in self.schema.features:
            m = self.max_change.get(f.name, f.max_change)
            out.append(math.inf if m is None else float(m))
        v = torch.tensor(out, dtype=torch.float64, device=device)
        return torch.where(self.movable(device), v, torch.zeros_like(v))

    def range_vectors(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high), each (D,) float64, -inf/inf where the schema gives no bound."""
        lo = [-math.inf if f.low is None else float(f.low) for f in self.schema.features]
        hi = [math.inf if f.high is None else float(f.high) for f in self.schema.features]
        return (
            torch.tensor(lo, dtype=torch.float64, device=device),
            torch.tensor(hi, dtype=torch.float64, device=device),
        )

    def direction_vector(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(D,) float64: +1 increase only, -1 decrease only, 0 either way."""
        sign = {"any": 0.0, "increase": 1.0, "decrease": -1.0}
        return torch.tensor(
            [sign[f.direction] for f in self.schema.features], dtype=torch.float64, device=device
        )

    def kind_masks(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(integral, categorical), each (D,) bool."""
        integral = torch.tensor([f.integral for f in self.schema.features], device=device)
        cat = torch.tensor([f.kind == "categorical" for f in self.schema.features], device=device)
        return integral, cat

    def cost_weights(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(D,) float64 budget weight per unit change: cost / range (scalars), cost per categorical change."""
        out = []
        for f in self.schema.features:
            if f.kind == "categorical":
                out.append(f.cost)
            elif f.low is not None and f.high is not None and f.high > f.low:
                out.append(f.cost / (f.high - f.low))
            else:
                out.append(0.0)  # only reachable for frozen features (checked in __post_init__)
        return torch.tensor(out, dtype=torch.float64, device=device)

    def distance(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """(N, D) per-feature change: |delta| for scalars, 1.0 for a changed categorical."""
        _, cat = self.kind_masks(x.device)
        delta = (x_adv.to(torch.float64) - x.to(torch.float64)).abs()
        return torch.where(cat, (delta > 0.5).to(torch.float64), delta)

    def cost(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """(N,) total cost of the change, in the units of ``budget``."""
        return (self.distance(x, x_adv) * self.cost_weights(x.device)).sum(dim=1)

    def relation_matrix(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (R, D), rhs (R,)) float64 of the schema's relations (empty when ``relations`` is False)."""
        rels = self.schema.relations if self.relations else ()
        a = torch.zeros(len(rels), len(self.schema), dtype=torch.float64, device=device)
        for r, rel in enumerate(rels):
            for n, c in rel.coefficients.items():
                a[r, self.schema.index(n)] = c
        return a, torch.tensor([rel.rhs for rel in rels], dtype=torch.float64, device=device)
