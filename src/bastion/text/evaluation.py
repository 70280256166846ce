"""Robust accuracy of a text classifier: a cascade of the text attacks at one threat preset.

``evaluate_text(model, texts, labels, preset="strict")`` runs the attacks in order, cheapest first
(invisible characters, homoglyphs, DeepWordBug, PWWS, TextFooler), each only on the texts that are still
classified correctly and that no earlier stage flipped, like the image cascade
(:func:`bastion.evaluation.evaluate`). A text counts as robust only if no attack found a valid edit (each
attack under its own family's ``preset`` threat model, every edit re-checked by the verifier). An attack
whose offline resource is missing is reported as *not run* with the reason; the robust accuracy is then
an upper bound and says so.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion import rng
from bastion.errors import AttackError, DataError
from bastion.text.model import as_text_classifier
from bastion.text.registry import PRESETS, TEXT_ATTACKS, make_text_attack

__all__ = ["CASCADE_ORDER", "TextEvaluation", "TextStage", "evaluate_text"]

log = logging.getLogger(__name__)

CASCADE_ORDER = ("invisible", "homoglyph", "deepwordbug", "pwws", "textfooler")
"""The default stages: the character tricks cost one query per candidate position, the word attacks many."""


@dataclass(frozen=True)
class TextStage:
    """One stage: ``attacked`` texts it ran on, ``fooled`` it flipped with a valid edit, robust accuracy
    over all texts after it, its ``queries`` (strings sent) and ``seconds``; ``status`` is ``ran`` or
    ``not run`` (``reason`` says why, e.g. a missing offline resource)."""

    attack: str
    status: str
    attacked: int
    fooled: int
    robust_accuracy: float
    queries: int
    seconds: float
    invalid: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class TextEvaluation:
    """The cascade's outcome at one ``preset``: per text, ``adversarials`` (the original where nothing
    flipped it), ``fooled`` (N,) bool and ``fooled_by`` (the attack's name or None)."""

    preset: str
    n_samples: int
    clean_accuracy: float
    robust_accuracy: float
    stages: tuple[TextStage, ...]
    adversarials: tuple[str, ...]
    fooled: torch.Tensor
    fooled_by: tuple[str | None, ...]
    seed: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)  # run bookkeeping, e.g. the shard runner's "engine"

    @property
    def complete(self) -> bool:
        """True when every stage ran (otherwise robust accuracy is an upper bound)."""
        return all(s.status == "ran" for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "n_samples": self.n_samples,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "complete": self.complete,
            "stages": [dataclasses.asdict(s) for s in self.stages],
            "seed": self.seed,
            "seconds": self.seconds,
            **self.extra,
        }


def check_cascade(preset: str, attacks: Sequence[str]) -> tuple[str, ...]:
    """``attacks`` as a tuple, or a one-line error for an unknown preset or attack (or none at all)."""
    if preset not in PRESETS:
        raise AttackError(f"unknown text preset {preset!r}; use {' or '.join(PRESETS)}")
    unknown = [a for a in attacks if a not in TEXT_ATTACKS]
    if unknown or not attacks:
        raise AttackError(f"unknown or no text attacks {unknown}; use some of: {', '.join(TEXT_ATTACKS)}")
    return tuple(attacks)


def labelled_texts(
    texts: Sequence[str], labels: Sequence[int] | torch.Tensor
) -> tuple[list[str], torch.Tensor]:
    """The texts as a list and their labels as int64 (N,) on the CPU; a one-line error unless there is one
    label per text and at least one text."""
    items = list(texts)
    y = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
    if not items or y.shape[0] != len(items):
        raise DataError(f"{len(items)} texts and {y.shape[0]} labels: give one label per text, at least one")
    return items, y


def evaluate_text(
    model: Any,
    texts: Sequence[str],
    labels: Sequence[int] | torch.Tensor,
    preset: str = "strict",
    *,
    attacks: Sequence[str] = CASCADE_ORDER,
    seed: int = 0,
    max_queries: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    example_ids: Sequence[int] | torch.Tensor | None = None,
) -> TextEvaluation:
    """Attack ``texts`` with ``attacks`` in turn at ``preset`` (``paper`` or ``strict``).

    ``model``: a text classifier (``list[str] -> logits (N, K)``) or a fitted scikit-learn text pipeline.
    ``max_queries``: per text and attack. ``progress(stage, done, total)`` is called as texts finish.
    Every text's random draws are keyed by (``seed``, its id): ``example_ids`` (default: positions) give
    the texts' indices in a larger evaluation, so a shard of it reproduces the whole run's texts.
    Guarantee: ``robust_accuracy`` = share of texts classified correctly and flipped by no stage's
    verified edit; the stages' ``fooled`` sum to the clean-correct texts lost.
    """
    check_cascade(preset, attacks)
    items, y = labelled_texts(texts, labels)
    ids = rng.example_ids(len(items), example_ids, unit="text", error=DataError).tolist()
    clf = as_text_classifier(model)
    t0 = time.perf_counter()
    correct = clf(items).argmax(dim=1).cpu() == y
    fooled = torch.zeros(len(items), dtype=torch.bool)
    adversarials: list[str] = list(items)
    fooled_by: list[str | None] = [None] * len(items)
    stages: list[TextStage] = []
    for name in attacks:
        todo = (correct & ~fooled).nonzero().flatten().tolist()
        robust = float((correct & ~fooled).float().mean())
        try:
            attack, threat = make_text_attack(name, preset, max_queries=max_queries)
        except (DataError, ImportError, OSError) as exc:  # a missing offline resource: say, don't drop
            log.warning("text attack %s (%s) not run: %s", name, preset, exc)
            stages.append(TextStage(name, "not run", 0, 0, robust, 0, 0.0, reason=str(exc)))
            continue
        if not todo:
            stages.append(TextStage(name, "ran", 0, 0, robust, 0, 0.0))
            continue
        report = None if progress is None else (lambda d, t, n=name: progress(n, d, t))
        result = attack(clf, [items[i] for i in todo], y[todo], threat, seed=seed, progress=report,
                        example_ids=[ids[i] for i in todo])  # fmt: skip
        for j, i in enumerate(todo):
            if bool(result.success[j]):
                fooled[i], adversarials[i], fooled_by[i] = True, result.adversarials[j], name
        stages.append(TextStage(
            name, "ran", len(todo), int(result.success.sum()), float((correct & ~fooled).float().mean()),
            int(result.queries.sum()), result.seconds, invalid=int((~result.valid).sum()),
        ))  # fmt: skip
    return TextEvaluation(
        preset=preset,
        n_samples=len(items),
        clean_accuracy=float(correct.float().mean()),
        robust_accuracy=float((correct & ~fooled).float().mean()),
        stages=tuple(stages),
        adversarials=tuple(adversarials),
        fooled=fooled,
        fooled_by=tuple(fooled_by),
        seed=seed,
        seconds=time.perf_counter() - t0,
    )
