"""The membership-attack contract. ``MembershipAttack.run`` is final: subclasses implement ``_score`` only.

Every membership attack is measured the same way, so the base class does it once: it checks the targets
(x (N, ...), integer labels y (N,), ``is_member`` (N,) bool), starts the clock, makes the randomness
explicit (``generator``, else a generator seeded with ``seed``, default 0; deterministic attacks ignore
it), and turns the subclass's scores into a :class:`MembershipResult` (ROC AUC, balanced accuracy, TPR
at 0.1% and 1% FPR, never accuracy alone) that records the target queries and the attack's
hyperparameters. The subclass only scores: ``_score(model, x, y, *, generator, **context)`` returns a
:class:`Scored` (higher score = member). ``context`` is what the attack needs beside the targets (its
reference models, say); a keyword the subclass does not take is a ``TypeError``, as a typo should be.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, final

import torch

from bastion.attacks.inference._query import check_targets
from bastion.attacks.inference.metrics import MembershipResult
from bastion.model import Classifier

__all__ = ["MembershipAttack", "Scored"]


class Scored(NamedTuple):
    """What a membership attack's ``_score`` returns: ``scores`` (N,) (higher = member), the rows sent to
    the target (``queries``), and ``params`` measured during the run (reference counts, reference
    queries...), merged over the attack's hyperparameters in the result."""

    scores: torch.Tensor
    queries: int
    params: Mapping[str, Any] = MappingProxyType({})


class MembershipAttack(ABC):
    """Base of every membership inference attack: hyperparameters at construction, target at ``run``.

    ::

        result = LiRA(online=False).run(model, x, y, is_member, references=refs, seed=0)
    """

    generator_device: ClassVar[Literal["input", "cpu"]] = "input"
    """Where the default generator lives: on the inputs' device (noise drawn next to the inputs), or on
    the CPU (draws over CPU-side indices, which then pick the same rows on every device)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The attack's name in results and reports."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The hyperparameters this attack was built with, JSON-ready."""

    @final
    def run(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        is_member: torch.Tensor,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        **context: Any,
    ) -> MembershipResult:
        """Score x (N, ...) with labels y (N,) and measure the scores against ``is_member`` (N,) bool.

        Randomness comes from ``generator`` or ``seed`` (default 0): the same seed gives the same result.
        ``context``: the subclass's extra inputs (see its ``_score``).
        """
        check_targets(model, x, y, is_member)
        start = time.perf_counter()
        if generator is None:
            device = x.device if self.generator_device == "input" else torch.device("cpu")
            generator = torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
        scored = self._score(model, x, y, generator=generator, **context)
        return MembershipResult.from_scores(
            scored.scores,
            is_member,
            attack=self.name,
            queries=scored.queries,
            params={**self.params(), **scored.params},
            seconds=time.perf_counter() - start,
        )

    if TYPE_CHECKING:
        # Each attack takes its own keyword context (references, ref_in, ...): typed as a callable so
        # that a subclass's precise signature is not an incompatible override of a ``**context`` one.
        _score: Callable[..., Scored]
    else:

        @abstractmethod
        def _score(self, model, x, y, *, generator, **context):
            """Scores (N,) for checked targets x (N, ...), y (N,); see :class:`Scored`."""
