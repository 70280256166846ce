"""Running one attack over many inputs in batches, timed, with the stronger variants the checks need."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks.base import Attack
from bastion.model import Classifier
from bastion.threat import ThreatModel

__all__ = ["Clock", "ProbeResult", "run_attack", "stronger"]


@dataclass
class Clock:
    """Accumulates the seconds spent inside attacks, to report the audit's own overhead; ``batches``
    (a :class:`bastion.engine.batches.AttackBatches`, or None) runs the audited model's attack batches
    on the shard runner (another engine, a run directory)."""

    attack_seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    batches: Any = None


@dataclass(frozen=True)
class ProbeResult:
    """An attack run on inputs ``index`` (into the audited set): who it fooled and with what."""

    name: str
    params: dict[str, Any]
    index: torch.Tensor
    success: torch.Tensor
    x_adv: torch.Tensor
    queries: int
    gradient_evals: int
    seconds: float

    @property
    def fooled(self) -> torch.Tensor:
        """Indices (into the audited set) of the inputs this attack fooled."""
        return self.index[self.success]

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.name,
            "params": self.params,
            "n_attacked": int(self.index.numel()),
            "n_fooled": int(self.success.sum()),
            "queries": self.queries,
            "gradient_evals": self.gradient_evals,
            "seconds": self.seconds,
        }


def run_attack(
    name: str,
    attack: Attack,
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    threat: ThreatModel,
    *,
    seed: int,
    batch_size: int,
    clock: Clock,
    what: str = "",
) -> ProbeResult:
    """Attack ``x[index]`` in batches with one seed, each input drawing as its index (so the batch size
    does not change its noise); the time goes to ``clock``."""
    start = time.perf_counter()
    if clock.batches is not None and clock.batches.handles(model) and index.numel():
        # the same batches, each run as one shard by the engine (another process, a run directory)
        success, x_adv, queries, grads = clock.batches.run(
            name, attack, x[index], y[index], threat, seed=seed, batch_size=batch_size, ids=index
        )
    else:
        success = torch.zeros(index.numel(), dtype=torch.bool, device=x.device)
        x_adv = x[index].clone()
        queries = grads = 0
        for lo in range(0, index.numel(), batch_size):
            part = index[lo : lo + batch_size]
            res = attack(model, x[part], y[part], threat, seed=seed, example_ids=part)
            success[lo : lo + part.numel()] = res.success
            x_adv[lo : lo + part.numel()] = res.x_adv
            queries += res.queries
            grads += res.gradient_evals
    seconds = time.perf_counter() - start
    clock.attack_seconds += seconds
    clock.log.append({"attack": name, "purpose": what, "threat": str(threat), "seconds": seconds})
    return ProbeResult(name, attack.params(), index, success, x_adv, queries, grads, seconds)


def stronger(attack: Attack) -> Attack:
    """A copy of a gradient attack with twice the steps, or with twice the restarts if it has no steps."""
    kwargs: dict[str, Any] = {}
    params = attack.params()
    if "steps" in params:
        kwargs["steps"] = 2 * int(params["steps"])
    elif "restarts" in params:
        kwargs["restarts"] = 2 * int(params["restarts"])
    init = {k: v for k, v in params.items() if k in type(attack).__init__.__code__.co_varnames}
    return type(attack)(**{**init, **kwargs})
