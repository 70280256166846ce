"""The text-attack contract. ``TextAttack.__call__`` is final: subclasses implement ``_attack_one`` only.

The base class checks the inputs, picks the threat model (the attack's ``paper`` preset by default),
refuses a threat model whose constraints it has no resource to check, counts every string sent to the
model per example (with an optional per-example query budget), skips texts the model already gets wrong,
and verifies every adversarial against the threat model with :func:`bastion.text.constraints.violations`
(independently of the attack) before it counts as a success, recomputing the prediction on the model.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, final

import torch

from bastion import rng
from bastion.errors import AttackError, DataError, QueryBudgetError, ThreatModelError
from bastion.text.attacks.result import TextAttackResult
from bastion.text.constraints import Resources, sentence_violations, violations
from bastion.text.model import TextClassifier, check_texts
from bastion.text.threat import TextThreatModel
from bastion.text.words import changed_words, char_edit_distance

__all__ = ["BudgetedTextClassifier", "TextAttack"]


class BudgetedTextClassifier:
    """Counts the strings an attack sends for one example and stops it at ``max_queries``."""

    def __init__(self, model: TextClassifier, max_queries: int | None) -> None:
        self.model = model
        self.max_queries = max_queries
        self.queries = 0

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    @property
    def remaining(self) -> int | None:
        return None if self.max_queries is None else self.max_queries - self.queries

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        items = list(texts)
        if self.max_queries is not None and self.queries + len(items) > self.max_queries:
            raise QueryBudgetError(f"the attack's budget of {self.max_queries} queries per text is spent")
        self.queries += len(items)
        return self.model(items)


class TextAttack(ABC):
    """Base of every text attack: ``attack(model, texts, labels, threat=None, seed=0, example_ids=None)``.

    Each text draws from its own generator seeded by (``seed``, its id): ids default to positions;
    pass the texts' indices in the whole evaluation so a subset or shard draws as the whole would.

    Subclasses set ``name``, ``family`` (the preset :meth:`TextThreatModel.for_attack` names), ``uses``
    (the edit kinds the algorithm can make) and implement :meth:`_attack_one`.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    uses: ClassVar[frozenset[str]]

    def __init__(self, *, resources: Resources | None = None, max_queries: int | None = None) -> None:
        if max_queries is not None and max_queries < 1:
            raise AttackError(f"max_queries must be >= 1 or None, got {max_queries}")
        self.resources = resources or Resources()
        self.max_queries = max_queries

    def params(self) -> dict[str, Any]:
        """Hyperparameters, for reports; subclasses extend it."""
        return {"max_queries": self.max_queries}

    @abstractmethod
    def _attack_one(
        self, model: BudgetedTextClassifier, text: str, label: int, threat: TextThreatModel,
        generator: torch.Generator,
    ) -> str:  # fmt: skip
        """An adversarial version of ``text`` (or ``text`` itself on failure). ``model`` counts queries
        and raises :class:`QueryBudgetError` when the budget is spent; the base class keeps ``text`` then."""

    @final
    def __call__(
        self,
        model: TextClassifier,
        texts: Sequence[str],
        labels: Sequence[int] | torch.Tensor,
        threat: TextThreatModel | None = None,
        *,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
        example_ids: Sequence[int] | torch.Tensor | None = None,
    ) -> TextAttackResult:
        items = check_texts(texts, doing=f"attacking with {self.name}")
        y = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if y.shape[0] != len(items):
            raise DataError(f"{len(items)} texts but {y.shape[0]} labels")
        ids = rng.example_ids(len(items), example_ids, unit="text", error=DataError).tolist()
        threat = threat or TextThreatModel.for_attack(self.family)
        if not threat.edits & self.uses:
            raise ThreatModelError(
                f"{self.name} makes {', '.join(sorted(self.uses))} edits; the threat model allows only "
                f"{', '.join(sorted(threat.edits))}"
            )
        self.resources.require(threat)
        t0 = time.perf_counter()
        clean = model(items).argmax(dim=1)
        correct = clean == y
        adversarials = list(items)
        queries = torch.ones(len(items), dtype=torch.long)  # the clean query
        todo = [i for i in range(len(items)) if bool(correct[i])]
        for done, i in enumerate(todo):
            budget = BudgetedTextClassifier(model, self.max_queries)
            # keyed by the text's id (its position unless example_ids says otherwise): the same draws in
            # any batch, subset or shard
            g = torch.Generator().manual_seed(seed * 1_000_003 + ids[i])
            try:
                adversarials[i] = self._attack_one(budget, items[i], int(y[i]), threat, g)
            except QueryBudgetError:
                adversarials[i] = items[i]
            queries[i] = budget.queries + 1  # + the clean query every attack starts from
            if progress is not None:
                progress(done + 1, len(todo))
        found = [violations(items[i], adversarials[i], threat, self.resources) for i in range(len(items))]
        far = sentence_violations(items, adversarials, threat, self.resources)
        reasons = tuple(
            tuple(v + (["below sentence similarity"] if f else [])) for v, f in zip(found, far, strict=True)
        )
        valid = torch.tensor([not r for r in reasons], dtype=torch.bool)
        predictions = model(adversarials).argmax(dim=1)  # re-verified on the model, not counted
        changed = [a != b for a, b in zip(items, adversarials, strict=True)]
        success = correct & valid & (predictions != y) & torch.tensor(changed, dtype=torch.bool)
        return TextAttackResult(
            originals=tuple(items),
            adversarials=tuple(adversarials),
            labels=y,
            clean_predictions=clean,
            predictions=predictions,
            success=success,
            valid=valid,
            violations=reasons,
            queries=queries,
            words_changed=torch.tensor(
                [len(changed_words(a, b)) for a, b in zip(items, adversarials, strict=True)]
            ),
            chars_changed=torch.tensor(
                [char_edit_distance(a, b) for a, b in zip(items, adversarials, strict=True)]
            ),
            attack=self.name,
            threat=threat,
            params=self.params(),
            seed=seed,
            seconds=time.perf_counter() - t0,
        )
