"""The tabular cascade: the cheap attack first, the next one only on what is still standing.

Like the image evaluation cascade (:mod:`bastion.evaluation`, :mod:`bastion.audit.cascade`): the
default runs constrained PGD (:class:`~bastion.tabular.attacks.CPGD`) when the model has gradients,
then the genetic search (:class:`~bastion.tabular.attacks.MoEvA`) on the records CPGD did not flip;
on a black-box model (no gradients) gradient stages are skipped and reported as such.

Every stage runs through its own final :meth:`TabularAttack.__call__` (repaired, re-verified,
counted), so the combined result is only a merge of verified pieces: a record's adversarial is the
first stage's success, else the last stage's best candidate. ``queries``, ``gradient_evals`` and
``seconds`` are the sums over the stages; :attr:`TabularCascadeResult.stages` reports each stage's
attacked records, new successes and costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bastion import rng
from bastion.errors import AttackError
from bastion.tabular.attacks.base import TabularAttack
from bastion.tabular.attacks.cpgd import CPGD
from bastion.tabular.attacks.moeva import MoEvA
from bastion.tabular.constraints import satisfied
from bastion.tabular.model import TabularClassifier
from bastion.tabular.results import TabularAttackResult
from bastion.tabular.threat import TabularThreatModel

__all__ = ["CascadeStage", "TabularCascade", "TabularCascadeResult", "records_spread"]


@dataclass(frozen=True)
class CascadeStage:
    """One stage's share of the work: ``attacked`` records it ran on, ``successes`` it added (valid,
    misclassified), of which ``already_wrong`` the model misclassified unchanged (only the first
    stage has any), its ``queries``/``gradient_evals``/``seconds``, and ``skipped`` (why it did not
    run, or None). ``flipped`` = successes - already_wrong: records the attack itself turned."""

    attack: str
    attacked: int
    successes: int
    queries: int
    gradient_evals: int
    seconds: float
    skipped: str | None = None
    already_wrong: int = 0

    @property
    def flipped(self) -> int:
        return self.successes - self.already_wrong

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "flipped": self.flipped}


@dataclass(frozen=True)
class TabularCascadeResult:
    """``result``: the merged :class:`TabularAttackResult` over all records; ``stages`` in run order."""

    result: TabularAttackResult
    stages: tuple[CascadeStage, ...]

    @property
    def robust_accuracy(self) -> float:
        return self.result.robust_accuracy

    @property
    def constraint_satisfaction(self) -> float:
        return self.result.constraint_satisfaction

    def summary(self) -> dict[str, Any]:
        return {**self.result.summary(), "stages": [s.to_dict() for s in self.stages]}


def records_spread(x: torch.Tensor) -> tuple[float, ...] | None:
    """Each feature's spread over all the records ``x`` (N, D), as MoEvA scales features on a model without
    an encoder; None for fewer than two records (MoEvA then uses the record's magnitude). One function for
    the cascade and the shard runner: a shard searches as one pass only if both take the same spread."""
    if len(x) < 2:
        return None
    return tuple(x.detach().to(torch.float64).std(dim=0, unbiased=False).tolist())


class TabularCascade:
    """``TabularCascade(stages=(CPGD(), MoEvA()))(model, x, y, threat, seed=0)`` -> TabularCascadeResult."""

    name = "cascade"

    def __init__(self, stages: Sequence[TabularAttack] | None = None) -> None:
        stages = tuple(stages) if stages is not None else (CPGD(), MoEvA())
        if not stages or not all(isinstance(s, TabularAttack) for s in stages):
            raise AttackError("stages must be a non-empty sequence of TabularAttack instances")
        self.stages = stages

    def __repr__(self) -> str:
        return f"TabularCascade(stages={list(self.stages)!r})"

    def params(self) -> dict[str, Any]:
        return {"stages": [{"attack": s.name, **s.params()} for s in self.stages]}

    def __call__(
        self,
        model: TabularClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: TabularThreatModel,
        *,
        seed: int = 0,
        example_ids: Sequence[int] | torch.Tensor | None = None,
        feature_scale: Sequence[float] | None = None,
    ) -> TabularCascadeResult:
        """Attack ``x`` (N, D) with labels ``y`` (N,); stage ``i`` is seeded with ``seed + i``, and
        every record draws by its id (``example_ids``, default its position; see
        :meth:`TabularAttack.__call__`). MoEvA stages without their own ``feature_scale`` get
        ``feature_scale`` (default: the spread of all of ``x``, not of the records a stage is left with).
        A shard of the records, given its ids and the whole set's spread, gives the whole run's rows."""
        if feature_scale is None:
            feature_scale = records_spread(x)
        ids = rng.example_ids(len(x), example_ids, unit="record", error=AttackError)
        runnable = [
            s for s in self.stages if s.access != "gradient" or getattr(model, "differentiable", False)
        ]
        if not runnable:
            raise AttackError(
                f"no stage of {self!r} can attack {type(model).__name__} (no gradients); add MoEvA()"
            )
        merged: TabularAttackResult | None = None
        report = []
        open_rows = torch.arange(len(x), device=x.device)
        for i, stage in enumerate(self.stages):
            if stage not in runnable:
                report.append(CascadeStage(stage.name, 0, 0, 0, 0, 0.0, skipped="model has no gradients"))
                continue
            if not open_rows.numel():
                report.append(CascadeStage(stage.name, 0, 0, 0, 0, 0.0, skipped="no record left"))
                continue
            run = stage
            if isinstance(stage, MoEvA) and stage.feature_scale is None and feature_scale is not None:
                run = type(stage)(**{**stage.params(), "feature_scale": feature_scale})
            part = run(model, x[open_rows], y[open_rows], threat, seed=seed + i,
                       example_ids=ids[open_rows.cpu()])  # fmt: skip
            report.append(
                CascadeStage(
                    stage.name,
                    len(open_rows),
                    int(part.success.sum()),
                    part.queries,
                    part.gradient_evals,
                    part.seconds,
                    already_wrong=int((part.success & ~part.changed.any(dim=1)).sum()),
                )
            )
            merged = part if merged is None else _merge(merged, part, open_rows)
            open_rows = (~merged.success).nonzero().flatten()
        if merged is None:  # unreachable: at least one stage is runnable and the first has every record
            raise AttackError("the cascade ran no stage")
        # the pieces were verified by their own attacks; re-check the merge all the same
        if not torch.equal(satisfied(merged.x_adv, merged.x, threat), merged.valid):
            raise AttackError("cascade merge produced an unverified record; this is a bug")
        merged = dataclasses.replace(merged, attack=self.name, params=self.params(), seed=seed)
        return TabularCascadeResult(merged, tuple(report))


def _merge(into: TabularAttackResult, part: TabularAttackResult, rows: torch.Tensor) -> TabularAttackResult:
    """``into`` with records ``rows`` replaced by ``part``'s (which attacked exactly those rows)."""
    fields: dict[str, Any] = {}
    for name in ("x_adv", "success", "valid", "predictions", "changed", "cost"):
        t = getattr(into, name).clone()
        t[rows] = getattr(part, name)
        fields[name] = t
    return dataclasses.replace(
        into,
        **fields,
        queries=into.queries + part.queries,
        gradient_evals=into.gradient_evals + part.gradient_evals,
        seconds=into.seconds + part.seconds,
    )
