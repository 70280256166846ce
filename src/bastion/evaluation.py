"""Robust-accuracy evaluation: a cascade of attacks in the manner of AutoAttack (Croce & Hein 2020).

Each stage attacks only the inputs still robust after the previous stages; an input counts as robust
only if every stage failed on it (the worst case per sample counts).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from bastion.attacks import get
from bastion.attacks.base import Attack, check_inputs, check_positive
from bastion.errors import AttackError, DataError
from bastion.model import Classifier, as_classifier
from bastion.rng import Randomness, rows
from bastion.threat import ThreatModel

__all__ = [
    "PRESETS",
    "EvaluationResult",
    "Focused",
    "Stage",
    "StageResult",
    "evaluate",
    "preset_attacks",
]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage_name, inputs_done, inputs_total)`` while a stage runs."""


class Stage(NamedTuple):
    """One stage of a preset: its name in results, the registry name, hyperparameters, and ``focus``: the
    fraction of the surviving inputs it attacks, those closest to the decision boundary (1.0: all)."""

    name: str
    attack: str
    params: dict[str, Any]
    focus: float = 1.0


# `standard`: APGD-CE on every input, then a short APGD-T over all 9 target classes (25 steps each) on
# every survivor, then each later stage only on its share of the survivors that came closest to the
# boundary: Square (1,000 queries) on the closest fifth, AutoAttack's full APGD-T (9 targets, 100 steps)
# on the closest 15%, Square with 5,000 queries on the closest 5%. Measured on the zoo's hardened models
# (benchmarks/RESULTS.md), 9 targets at 25 steps break more inputs than 3 targets at 100 steps for less
# work, and their margins rank the survivors for the focused stages better. On a robust model most inputs
# survive with a wide margin that no attack closes; the few that stronger attacks break are the ones
# nearest the boundary (docs/evasion.md). `autoattack` is the published standard protocol stage for stage
# (Croce & Hein 2020), for numbers comparable with RobustBench's.
PRESETS: dict[str, list[Stage]] = {
    "fast": [
        Stage("apgd-ce", "apgd-ce", {"steps": 50}),
        Stage("apgd-t", "apgd-t", {"steps": 50, "n_target_classes": 3}),
    ],
    "standard": [
        Stage("apgd-ce", "apgd-ce", {"steps": 100}),
        Stage("apgd-t", "apgd-t", {"steps": 25, "n_target_classes": 9}),
        Stage("square", "square", {"n_queries": 1000}, focus=0.2),
        Stage("apgd-t-9", "apgd-t", {"steps": 100, "n_target_classes": 9}, focus=0.15),
        Stage("square-5000", "square", {"n_queries": 5000}, focus=0.05),
    ],
    "thorough": [
        Stage("apgd-ce", "apgd-ce", {"steps": 100, "restarts": 5}),
        Stage("apgd-t", "apgd-t", {"steps": 200, "n_target_classes": 9, "restarts": 3}),
        Stage("fmn", "fmn", {"steps": 300}),
        Stage("square", "square", {"n_queries": 10000, "restarts": 2}),
    ],
    "autoattack": [
        Stage("apgd-ce", "apgd-ce", {"steps": 100}),
        Stage("apgd-t", "apgd-t", {"steps": 100, "n_target_classes": 9}),
        Stage("fab-t", "fab-t", {"steps": 100, "n_target_classes": 9}),
        Stage("square", "square", {"n_queries": 5000, "p_init": 0.8}),
    ],
}


class Focused(Attack):
    """``attack`` on the ``focus`` fraction (at least ``min_inputs``) of its inputs nearest the boundary.

    :func:`evaluate` ranks the survivors by the largest normalised margin any earlier stage reached and
    hands this stage only the top ones. Called on its own (the audit's cascade) it ranks by the margin
    at the inputs themselves; the others come back unchanged (not fooled).
    """

    def __init__(self, attack: Attack, focus: float, min_inputs: int = 10) -> None:
        if not (isinstance(focus, int | float) and 0 < focus <= 1):
            raise AttackError(f"focus is a fraction of the inputs in (0, 1], got {focus!r}")
        check_positive("min_inputs", min_inputs, integer=True)
        self.attack, self.focus, self.min_inputs = attack, float(focus), int(min_inputs)
        # the wrapped attack's identity: the cascade and the audit read these
        for key in ("name", "norms", "access", "minimum_norm"):
            setattr(self, key, getattr(attack, key))

    def params(self) -> dict[str, Any]:
        return {**self.attack.params(), "focus": self.focus}

    def size(self, n: int) -> int:
        """How many of ``n`` inputs this stage attacks."""
        return min(n, max(math.ceil(self.focus * n), self.min_inputs))

    def nearest(self, idx: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
        """The indices ``idx`` this stage attacks, in order: those with the largest ``margin`` (N,)."""
        return idx[margin[idx].argsort(descending=True)[: self.size(idx.numel())]].sort().values

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
        with torch.no_grad():
            margin = boundary_margin(model(x), y)
        top = margin.argsort(descending=True)[: self.size(x.shape[0])].sort().values
        out = x.clone()
        t = None if targets is None else targets[top]
        out[top] = self.attack._run(model, x[top], y[top], threat, targets=t, generator=rows(generator, top))
        return out


def boundary_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How close each input is to misclassification, scale-free: (best other logit - true logit) /
    (top logit - third logit); negative while correct, 0 on the boundary. (N,)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], -math.inf).amax(1)
    top = logits.sort(dim=1, descending=True).values
    spread = top[:, 0] - top[:, min(2, top.shape[1] - 1)]
    return (other - true) / (spread + 1e-12)


def preset_attacks(preset: str, *, eot_samples: int = 1) -> list[tuple[str, Attack]]:
    """The (stage name, attack) list of a preset; ``eot_samples`` > 1 goes to every attack that takes it.
    Focused stages come as :class:`Focused` attacks."""
    if preset not in PRESETS:
        raise AttackError(f"unknown preset {preset!r}; use one of: {', '.join(PRESETS)}")
    out: list[tuple[str, Attack]] = []
    for stage in PRESETS[preset]:
        attack = with_eot(get(stage.attack, **stage.params), eot_samples)
        out.append((stage.name, attack if stage.focus == 1 else Focused(attack, stage.focus)))
    return out


def with_eot(attack: Attack, eot_samples: int) -> Attack:
    """A copy of ``attack`` averaging gradients over ``eot_samples`` draws; attacks without EOT (black-box
    ones) and ``eot_samples == 1`` come back unchanged."""
    if isinstance(attack, Focused):
        return Focused(with_eot(attack.attack, eot_samples), attack.focus, attack.min_inputs)
    params = attack.params()
    if eot_samples == 1 or "eot_samples" not in params:
        return attack
    init = inspect.signature(type(attack).__init__).parameters
    kwargs: dict[str, Any] = {k: v for k, v in params.items() if k in init}
    return type(attack)(**{**kwargs, "eot_samples": eot_samples})


@dataclass(frozen=True)
class StageResult:
    """One stage of the cascade. ``robust_accuracy`` is the running value after this stage."""

    attack: str
    params: dict[str, Any]
    robust_accuracy: float
    n_attacked: int
    n_fooled: int
    queries: int
    gradient_evals: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "params": self.params,
            "robust_accuracy": self.robust_accuracy,
            "n_attacked": self.n_attacked,
            "n_fooled": self.n_fooled,
            "queries": self.queries,
            "gradient_evals": self.gradient_evals,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class EvaluationResult:
    """Outcome of :func:`evaluate`.

    ``robust`` (N,) bool: correctly classified and no stage found an adversarial. ``x_adv`` (N, ...):
    the adversarial found for each fooled input (the input itself elsewhere); ``predictions`` (N,)
    the model's labels on ``x_adv``.
    """

    threat: ThreatModel
    preset: str
    clean_accuracy: float
    robust_accuracy: float
    clean_correct: torch.Tensor
    robust: torch.Tensor
    x_adv: torch.Tensor
    predictions: torch.Tensor
    stages: list[StageResult]
    seconds: float
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.robust.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors)."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "n_samples": self.n_samples,
            "threat": {
                "norm": self.threat.norm.value,
                "epsilon": self.threat.epsilon,
                "bounds": list(self.threat.bounds),
            },
            "preset": self.preset,
            "seed": self.seed,
            "stages": [s.to_dict() for s in self.stages],
            "queries": sum(s.queries for s in self.stages),
            "gradient_evals": sum(s.gradient_evals for s in self.stages),
            "seconds": self.seconds,
            **self.extra,
        }


Batches = Iterable[tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor]]


class _Source:
    """The inputs, as a pair of tensors or a re-iterable stream of ``(x, y)`` batches, served as chunks of
    at most ``batch_size`` chosen inputs in index order: the same chunks either way, so a stream gives the
    same result as its concatenation. Only one chunk of a stream is on hand at a time."""

    def __init__(self, clf: Classifier, x: torch.Tensor | Batches, y: torch.Tensor | None) -> None:
        self.clf, self.stream = clf, None if isinstance(x, torch.Tensor) else x
        if isinstance(x, torch.Tensor):
            if y is None:
                raise DataError("evaluate(model, x, y, threat): pass the labels y with a tensor x")
            y, _ = check_inputs(clf, x, y)
            self.x, self.y = x.detach(), y
            return
        if isinstance(x, Iterator):
            raise DataError(
                "evaluate needs data it can read once per stage: pass a DataLoader (shuffle=False) or a "
                "list of (x, y) batches, not a one-shot iterator or generator"
            )
        labels = [self._pair(batch)[1] for batch in x]
        if not labels:
            raise DataError("the data yielded no batches")
        self.y = torch.cat(labels)

    @staticmethod
    def _pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not (isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
            raise DataError(f"each batch must be an (x, y) pair of tensors, got {type(batch).__name__}")
        return batch[0].detach(), torch.as_tensor(batch[1], device=batch[0].device).long()

    def chunks(
        self, idx: torch.Tensor, size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(index part, x part, y part) for the sorted ``idx``, ``size`` inputs at a time."""
        if self.stream is None:
            for lo in range(0, idx.numel(), size):
                part = idx[lo : lo + size]
                yield part, self.x[part], self.y[part]
            return
        wanted = torch.zeros(self.y.shape[0], dtype=torch.bool)
        wanted[idx.cpu()] = True
        xs: list[torch.Tensor] = []
        offset, held = 0, 0
        for batch in self.stream:
            xb, yb = self._pair(batch)
            if xb.shape[0] == 0:
                continue
            rows = torch.arange(offset, offset + xb.shape[0])
            if rows[-1] >= self.y.shape[0] or not torch.equal(yb.cpu(), self.y[rows].cpu()):
                raise DataError(
                    "the data changed between passes (a shuffling DataLoader?); use shuffle=False"
                )
            offset += xb.shape[0]
            keep = wanted[rows].to(xb.device)
            if bool(keep.any()):
                xs.append(xb[keep])
                held += int(keep.sum())
            while held >= size or (held and offset == self.y.shape[0]):
                xc = torch.cat(xs)
                part, xs = idx[:size], [xc[size:]] if xc.shape[0] > size else []
                idx, held = idx[size:], held - part.numel()
                yield part, xc[:size], self.y[part.to(self.y.device)]
        if offset != self.y.shape[0]:
            raise DataError("the data changed between passes (a shuffling DataLoader?); use shuffle=False")


def evaluate(
    model: Classifier | nn.Module,
    x: torch.Tensor | Batches,
    y: torch.Tensor | ThreatModel | None = None,
    threat: ThreatModel | None = None,
    preset: str = "standard",
    *,
    attacks: list[tuple[str, Attack]] | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: Progress | None = None,
    engine: Any = None,
    run_dir: Any = None,
    shard_size: int = 500,
    example_ids: torch.Tensor | None = None,
) -> EvaluationResult:
    """Robust accuracy of ``model`` on ``x`` (N, ...), ``y`` (N,) under ``threat``.

    ``engine`` (``"local"``, ``"ray"`` or a :mod:`bastion.engine` engine) or ``run_dir`` runs the cascade
    through the shard runner instead (:func:`bastion.engine.evaluate_sharded`: shards of ``shard_size``
    examples, kept in ``run_dir`` for resuming; on Ray ``model`` is a :class:`bastion.engine.ModelRef`);
    ``x`` must then be a tensor and the stages a preset's.

    ``x`` may instead be a re-iterable stream of ``(x, y)`` batches (a DataLoader with ``shuffle=False``,
    a list): ``evaluate(model, loader, threat)``. It is read once per stage and attacked ``batch_size``
    inputs at a time, with the same result as the concatenated tensors; the result still holds ``x_adv``
    for every input. ``attacks`` replaces the preset's stages with your own ``(name, attack)`` list.
    Stage ``i`` runs with seed ``seed + i`` in batches of ``batch_size`` inputs; each input's random draws
    are keyed by its id (``example_ids``, default its position), so neither the batch size nor how the
    data is split changes them (a focused stage still ranks the inputs it is given). Guarantee: every input
    reported non-robust has an ``x_adv`` inside the threat ball that the model misclassifies (or is a
    clean error).
    """
    if isinstance(y, ThreatModel):  # evaluate(model, batches, threat)
        y, threat = None, y
    if threat is None:
        raise AttackError("evaluate needs a threat: evaluate(model, x, y, ThreatModel('linf', 0.03))")
    if engine is not None or run_dir is not None:
        from bastion.engine import ModelRef, evaluate_sharded

        if not isinstance(x, torch.Tensor) or y is None or attacks is not None:
            raise AttackError("the shard runner (engine=, run_dir=) takes tensors x, y and a preset's stages")
        live = model if isinstance(model, ModelRef) else as_classifier(model, bounds=threat.bounds)
        return evaluate_sharded(
            live, x, y, threat, preset, seed=seed, batch_size=batch_size, shard_size=shard_size,
            engine=engine, run_dir=run_dir,
            progress=None if progress is None else (lambda done, total: progress(preset, done, total)),
        )  # fmt: skip
    clf = as_classifier(model, bounds=threat.bounds)
    source = _Source(clf, x, y)
    stages_to_run = attacks if attacks is not None else preset_attacks(preset)
    if batch_size < 1:
        raise AttackError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    n = int(source.y.shape[0])
    everything = torch.arange(n, device=source.y.device)
    ids = everything.cpu() if example_ids is None else torch.as_tensor(example_ids, dtype=torch.int64).cpu()
    if ids.shape != (n,):
        raise AttackError(f"example_ids must hold one id per input ({n}), got shape {tuple(ids.shape)}")
    x_adv_parts, preds = [], []
    for _, xc, yc in source.chunks(everything, batch_size):
        if source.stream is not None:
            check_inputs(clf, xc, yc)
        with torch.no_grad():
            preds.append(clf(xc).argmax(dim=1))
        x_adv_parts.append(xc.clone())
    x_adv, clean_pred = torch.cat(x_adv_parts), torch.cat(preds).to(source.y.device)
    y_all = source.y
    clean_correct = clean_pred == y_all
    robust = clean_correct.clone()
    predictions = clean_pred.clone()
    # each survivor's largest normalised margin after any stage, to rank them for focused stages
    focused_ahead = [isinstance(a, Focused) for _, a in stages_to_run]
    margin = torch.full((n,), -math.inf, device=y_all.device)
    results: list[StageResult] = []
    for i, (stage_name, attack) in enumerate(stages_to_run):
        idx, runner = robust.nonzero().flatten(), attack
        if isinstance(attack, Focused):
            idx = attack.nearest(idx, margin)
            runner = attack.attack
        t0 = time.perf_counter()
        queries = grads = fooled = done = 0
        for part, xc, yc in source.chunks(idx, batch_size):
            res = runner(clf, xc, yc, threat, seed=seed + i, example_ids=ids[part.cpu()])
            queries += res.queries
            grads += res.gradient_evals
            hit = part[res.success]
            fooled += int(hit.numel())
            robust[hit] = False
            x_adv[hit] = res.x_adv[res.success].to(x_adv.device)
            predictions[hit] = res.predictions[res.success]
            if any(focused_ahead[i + 1 :]):
                with torch.no_grad():
                    m = boundary_margin(clf(res.x_adv), yc)
                margin[part] = torch.maximum(margin[part], m)
            done += part.numel()
            if progress is not None:
                progress(stage_name, done, int(idx.numel()))
        if progress is not None and idx.numel() == 0:
            progress(stage_name, 0, 0)
        results.append(
            StageResult(
                attack=stage_name,
                params=attack.params(),
                robust_accuracy=float(robust.float().mean()),
                n_attacked=int(idx.numel()),
                n_fooled=fooled,
                queries=queries,
                gradient_evals=grads,
                seconds=time.perf_counter() - t0,
            )
        )
    return EvaluationResult(
        threat=threat,
        preset=preset if attacks is None else "custom",
        clean_accuracy=float(clean_correct.float().mean()),
        robust_accuracy=float(robust.float().mean()),
        clean_correct=clean_correct,
        robust=robust,
        x_adv=x_adv,
        predictions=predictions,
        stages=results,
        seconds=time.perf_counter() - start,
        seed=seed,
    )
