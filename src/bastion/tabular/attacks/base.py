"""The tabular attack contract. ``TabularAttack.__call__`` is final: subclasses implement ``_run`` only.

The base class validates model, records, labels and threat; seeds randomness; attacks only the
records the model classifies correctly; counts queries and gradient evaluations; **repairs** the
subclass's candidates onto the threat model (:func:`bastion.tabular.repair`), **re-checks** them
with :func:`bastion.tabular.satisfied` (independent of the repair) and recomputes success on the
model. A success counts only for a valid record, so no attack can report an impossible record.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch

from bastion import rng
from bastion.errors import DataError, ModelContractError, ThreatModelError
from bastion.rng import ExampleRNG, Randomness, rows
from bastion.tabular.constraints import repair, satisfied
from bastion.tabular.model import TabularClassifier, check_records
from bastion.tabular.results import TabularAttackResult
from bastion.tabular.schema import TabularSchema
from bastion.tabular.threat import TabularThreatModel

__all__ = ["CountingTabularClassifier", "TabularAttack"]

Access = Literal["gradient", "scores", "decisions"]

NEEDS_GRADIENTS = (
    "{name} needs a differentiable model (TorchTabularClassifier) and got {model}, which has no gradients; "
    "attack it with a gradient-free tabular attack (the constrained genetic search) instead"
)


class CountingTabularClassifier:
    """Forwards to a tabular classifier and counts records forwarded (``queries``) and back-propagated
    (``gradient_evals``, by a hook on the logits, once per backward pass)."""

    def __init__(self, model: TabularClassifier) -> None:
        self.model = model
        self.schema: TabularSchema = model.schema
        self.differentiable = bool(getattr(model, "differentiable", False))
        self.queries = 0
        self.gradient_evals = 0

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    @property
    def encoder(self) -> Any:
        return getattr(self.model, "encoder", None)

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.gradient_evals += int(grad.shape[0])

    def _counted(self, logits: torch.Tensor, n: int) -> torch.Tensor:
        self.queries += n
        if logits.requires_grad:
            logits.register_hook(self._count_backward)
        return logits

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._counted(self.model(x), int(x.shape[0]))

    def logits_encoded(self, z: torch.Tensor) -> torch.Tensor:
        """Relaxed model-space inputs (N, M) -> logits; only for differentiable models."""
        fn = getattr(self.model, "logits_encoded", None)
        if fn is None:
            raise ModelContractError(f"{type(self.model).__name__} has no encoded (differentiable) path")
        return self._counted(fn(z), int(z.shape[0]))


def _labels(y: Any, x: torch.Tensor, k: int) -> torch.Tensor:
    t = torch.as_tensor(y, device=x.device)
    if t.dim() != 1 or t.shape[0] != x.shape[0] or t.is_floating_point() or t.dtype == torch.bool:
        raise DataError(f"y must hold ({x.shape[0]},) integer class labels, got {t.dtype} {tuple(t.shape)}")
    t = t.long()
    if int(t.min()) < 0 or int(t.max()) >= k:
        raise DataError(f"y holds labels outside 0..{k - 1} (the model has {k} classes)")
    return t


class TabularAttack(ABC):
    """Base of every tabular evasion attack: ``attack(model, x, y, threat, seed=0)`` -> result."""

    name: ClassVar[str] = "tabular-attack"
    access: ClassVar[Access] = "gradient"

    def params(self) -> dict[str, Any]:
        """The hyperparameters this attack was built with (public attributes of simple types)."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and isinstance(v, int | float | str | bool | type(None) | tuple)
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def __call__(
        self,
        model: TabularClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: TabularThreatModel,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        example_ids: Sequence[int] | torch.Tensor | None = None,
    ) -> TabularAttackResult:
        """Attack records ``x`` (N, D, user space) with true labels ``y`` (N,) under ``threat``.

        Each record draws from its own stream keyed by (``seed``, its id): ``example_ids`` (default: the
        positions) give the records' indices in a larger run, so a subset or shard draws as the whole
        would (:class:`bastion.rng.ExampleRNG`). A ``generator`` given instead is shared by the batch."""
        if not all(hasattr(model, a) for a in ("schema", "num_classes")) or not callable(model):
            raise ModelContractError(
                f"{type(model).__name__} is not a TabularClassifier; wrap it in TorchTabularClassifier or "
                "SklearnTabularClassifier"
            )
        if not isinstance(threat, TabularThreatModel):
            raise ThreatModelError(f"threat must be a TabularThreatModel, got {type(threat).__name__}")
        layout = [(f.name, f.kind, f.categories) for f in threat.schema.features]
        if layout != [(f.name, f.kind, f.categories) for f in model.schema.features]:
            # mutability, ranges and costs may differ (a threat may free a feature); the columns may not
            raise ThreatModelError(
                "the threat model's schema and the model's schema differ in feature names, kinds or "
                "categories; build the threat from model.schema (schema.updated(...) to change a feature)"
            )
        if self.access == "gradient" and not getattr(model, "differentiable", False):
            raise ModelContractError(NEEDS_GRADIENTS.format(name=self.name, model=type(model).__name__))
        check_records(x, threat.schema)
        y = _labels(y, x, int(model.num_classes))
        randomness: Randomness
        if generator is None:
            seed = 0 if seed is None else int(seed)
            ids = rng.example_ids(len(x), example_ids, unit="record", error=DataError)
            randomness = ExampleRNG(seed, ids, device=x.device)
        else:
            randomness = generator
        x = x.detach().to(torch.float64)
        counter = CountingTabularClassifier(model)
        start = time.perf_counter()
        with torch.no_grad():
            todo = counter(x).argmax(dim=1) == y
        x_adv = x.clone()
        idx = todo.nonzero().flatten()
        if idx.numel():
            with torch.enable_grad():
                found = self._run(counter, x[idx].clone(), y[idx], threat, generator=rows(randomness, idx))
            if not isinstance(found, torch.Tensor) or found.shape != x[idx].shape:
                raise ModelContractError(
                    f"{self.name}._run returned a wrong shape; this is a bug in the attack"
                )
            x_adv[idx] = found.detach().to(torch.float64)
        x_adv = repair(x_adv, x, threat)
        seconds = time.perf_counter() - start
        valid = satisfied(x_adv, x, threat)
        with torch.no_grad():
            pred = torch.cat([model(x_adv[i : i + 4096]).argmax(dim=1) for i in range(0, len(x_adv), 4096)])
        changed = x_adv != x
        # an unchanged record is the user's own data: its misclassification counts even if it breaks a
        # constraint (say, a relation the original already violates); a changed one must be valid
        success = (pred != y) & (valid | ~changed.any(dim=1))
        return TabularAttackResult(
            x=x,
            x_adv=x_adv,
            y=y,
            success=success,
            valid=valid,
            predictions=pred,
            changed=changed,
            cost=threat.cost(x, x_adv),
            queries=counter.queries,
            gradient_evals=counter.gradient_evals,
            seconds=seconds,
            attack=self.name,
            schema=threat.schema,
            params=self.params(),
            seed=seed,
        )

    @abstractmethod
    def _run(
        self,
        model: CountingTabularClassifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: TabularThreatModel,
        *,
        generator: Randomness,
    ) -> torch.Tensor:
        """Return candidate records (N, D) for the records the model still classifies correctly.

        Draw through :mod:`bastion.rng` (``uniform``/``normal``/``integers`` with rows first, ``rows`` for
        a subset), so each record's draws are its own.

        ``x`` is a float64 copy the subclass may overwrite. The base class repairs and verifies.
        """
