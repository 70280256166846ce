"""The extraction-attack contract. ``ExtractionAttack.run`` is final: subclasses implement ``_query`` only.

Every extraction attack spends a query budget on a black-box victim and trains clones on the answers,
so the base class does the bookkeeping once: it checks the budget and the pool (inside the victim's
bounds), seeds the attack's generator, puts the victim behind an :class:`Oracle` that sees only the
released probabilities and refuses any row past the budget, reports the queries spent, and hands the
queries, in the order they were made, to :func:`finish`, which trains a clone per budget checkpoint and
measures each (the curve). The subclass only chooses what to send: ``_query`` returns a :class:`Queried`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, final

import torch
from torch import nn

from bastion.attacks.base import check_positive
from bastion.attacks.extraction._finish import as_inputs, finish
from bastion.attacks.extraction._oracle import Oracle
from bastion.attacks.extraction._training import CloneTraining
from bastion.model import Classifier

if TYPE_CHECKING:
    from bastion.attacks.extraction.clone import ExtractionResult

__all__ = ["ExtractionAttack", "Progress", "Queried"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stages ``queries`` (victim rows) and ``clones`` (curve points)."""


class Queried(NamedTuple):
    """What an extraction attack's ``_query`` returns: the inputs sent (Q, ...) and the probabilities
    released for them (Q, K), in the order sent, and ``params`` learnt on the way (rounds run...), merged
    over the attack's hyperparameters in the result."""

    x: torch.Tensor
    released: torch.Tensor
    params: Mapping[str, Any] = MappingProxyType({})


class ExtractionAttack(ABC):
    """Base of the extraction attacks: hyperparameters at construction, victim and budget at ``run``.

    Subclasses set ``output`` (``probs`` or ``labels``: what clones train on), ``budgets`` (the curve's
    checkpoints), ``training`` (:class:`CloneTraining`), ``query_batch`` (rows per victim call) and
    ``_clone`` (a factory of untrained modules, None for :func:`small_cnn`) in their constructor.
    """

    name: ClassVar[str] = "extraction"
    output: str
    budgets: tuple[int, ...]
    training: CloneTraining
    query_batch: int
    _clone: Callable[[], nn.Module] | None

    @property
    def attack_name(self) -> str:
        """The name the result and the clone's card record (the attack and, where it has one, its
        variant)."""
        return self.name

    def params(self) -> dict[str, Any]:
        """The public hyperparameters, JSON-ready (the training settings as a dict)."""
        p = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"}
        return {**p, "budgets": list(self.budgets), "training": self.training.to_dict()}

    @final
    def run(
        self,
        victim: Classifier,
        pool: Any,
        budget: int,
        *,
        test: Any = None,
        reference: Classifier | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> ExtractionResult:
        """Spend at most ``budget`` queries (rows) on ``victim`` with inputs from ``pool`` (a Dataset or
        (N, ...) tensor inside the victim's bounds; its labels are never sent), train the clones, and
        measure them on ``test`` (a Dataset): fidelity against ``reference`` if given, else the victim,
        whose answers there are counted apart as ``evaluation_queries``. Same seed, same clone.
        ``progress(stage, done, total)`` reports queries and clones.
        """
        check_positive("budget", budget, integer=True)
        x_pool, pool_name = as_inputs(pool, victim.bounds)
        g = torch.Generator().manual_seed(seed)
        oracle = Oracle(victim, budget, self.query_batch)
        queried = self._query(oracle, pool, x_pool, g, seed, progress)
        if progress is not None:
            progress("queries", oracle.queries, budget)
        return finish(
            attack=self.attack_name,
            params={**self.params(), **queried.params},
            victim=victim,
            x_q=queried.x,
            released=queried.released,
            output=self.output,
            budgets=self.budgets,
            factory=self._clone,
            training=self.training,
            test=test,
            reference=reference,
            seed=seed,
            pool_name=pool_name,
            progress=None if progress is None else (lambda d, t: progress("clones", d, t)),
        )

    @abstractmethod
    def _query(
        self,
        oracle: Oracle,
        pool: Any,
        x_pool: torch.Tensor,
        generator: torch.Generator,
        seed: int,
        progress: Progress | None,
    ) -> Queried:
        """Spend the ``oracle``'s budget on inputs chosen from the pool's inputs ``x_pool`` (N, ...)
        (``pool`` as given, for what it carries beside them, such as labels to cluster by), drawing
        randomness from ``generator`` (CPU, seeded with ``seed``, which also seeds any clone trained
        along the way); ``progress`` may report the ``queries`` stage as rounds complete."""
