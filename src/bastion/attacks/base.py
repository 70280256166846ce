"""The attack contract. ``Attack.__call__`` is final: subclasses implement ``_run`` only.

The base class validates inputs, seeds randomness, skips inputs the model already misclassifies,
counts queries and gradient evaluations, projects the subclass's answer onto the threat ball and
the bounds, and recomputes success on the model. No attack can return an out-of-budget or stale result.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from bastion.errors import AttackError, DataError, ModelContractError, ThreatModelError
from bastion.model import Classifier, as_classifier
from bastion.results import AttackResult
from bastion.rng import ExampleRNG, Randomness, rows
from bastion.threat import Norm, ThreatModel

__all__ = ["Access", "Attack", "CountingClassifier", "check_inputs", "check_positive", "is_success"]

Access = Literal["gradient", "scores", "decisions"]


class CountingClassifier:
    """Forwards to a classifier and counts the inputs it sees.

    ``queries`` counts every input forwarded. ``gradient_evals`` counts inputs back-propagated: a hook
    on the logits fires once per backward pass that flows through them, so repeated backward passes
    over one forward (DeepFool's per-class gradients) and EOT's several forwards are all counted, and
    a forward that is never differentiated is not.
    """

    def __init__(self, model: Classifier) -> None:
        self.model = model
        self.bounds = model.bounds
        self.queries = 0
        self.gradient_evals = 0

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.gradient_evals += int(grad.shape[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += int(x.shape[0])
        logits = self.model(x)
        if logits.requires_grad:
            logits.register_hook(self._count_backward)
        return logits


def is_success(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Misclassified (untargeted) or classified as ``targets`` (targeted); (N,) bool."""
    pred = logits.argmax(dim=1)
    return pred == targets if targets is not None else pred != y


NOT_DIFFERENTIABLE = (
    "the model's output has no gradient with respect to its input (the graph is cut: .detach(), numpy or "
    "integer ops inside); use a black-box attack (square, hopskipjump, transfer) or give the "
    "non-differentiable part a differentiable backward pass (BPDA)"
)


def differentiable(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` unchanged; raises ModelContractError when they carry no gradient graph to the input."""
    if not logits.requires_grad:
        raise ModelContractError(NOT_DIFFERENTIABLE)
    return logits


def check_batch(model: Classifier, x: torch.Tensor, *, doing: str) -> None:
    """Raise :class:`DataError` unless ``x`` is a non-empty, finite, floating-point batch (N, ...) inside
    the model's bounds; ``doing`` ("attacking", "scoring it") completes the NaN message."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"x must be a torch.Tensor, got {type(x).__name__} (use torch.as_tensor)")
    if not x.is_floating_point():
        raise DataError(
            f"x must be a floating-point tensor, got {x.dtype}: floating point values inside the model's "
            "bounds; convert e.g. uint8 images with x / 255"
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"x contains NaN or infinite values; clean the data before {doing}")
    low, high = model.bounds
    if float(x.min()) < low - 1e-6 or float(x.max()) > high + 1e-6:
        raise DataError(
            f"x spans [{float(x.min()):g}, {float(x.max()):g}], outside the model's bounds "
            f"[{low:g}, {high:g}]; scale the data or declare the right bounds on the model"
        )


def check_inputs(
    model: Classifier, x: torch.Tensor, y: torch.Tensor, *, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate a batch against the model; return ``y`` (and ``targets``) as long tensors on x's device."""
    check_batch(model, x, doing="attacking")
    y = _as_labels(y, x, "y")
    t = _as_labels(targets, x, "targets") if targets is not None else None
    k = model.num_classes
    for name, labels in (("y", y), ("targets", t)):
        if labels is not None and k is not None and int(labels.max()) >= k:
            raise DataError(f"{name} has label {int(labels.max())} but the model has {k} classes")
    return y, t


def _as_labels(labels: Any, x: torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(labels, device=x.device)
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise DataError(f"{name} must have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise DataError(f"{name} must hold integer class labels, got {t.dtype}")
    t = t.long()
    if int(t.min()) < 0:
        raise DataError(f"{name} has a negative label ({int(t.min())})")
    return t


class Attack(ABC):
    """Base of every evasion attack.

    Hyperparameters go to the constructor; model, data and threat to the call::

        result = PGD(steps=40)(model, x, y, ThreatModel("linf", 0.1), seed=0)
    """

    name: ClassVar[str] = "attack"
    norms: ClassVar[frozenset[Norm]] = frozenset({Norm.LINF, Norm.L2})
    access: ClassVar[Access] = "gradient"
    minimum_norm: ClassVar[bool] = False
    """Minimum-norm attacks search for the smallest adversarial; the threat's epsilon only caps it."""

    def params(self) -> dict[str, Any]:
        """The hyperparameters this attack was built with (public attributes of simple types)."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if not k.startswith("_") and isinstance(v, int | float | str | bool | type(None) | tuple):
                out[k] = v
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __call__(
        self,
        model: Classifier | nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        targets: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        example_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> AttackResult:
        """Attack ``x`` (N, ...) with true labels ``y`` (N,) under ``threat``.

        ``targets`` (N,) makes the attack targeted. Randomness comes from ``seed`` (default 0) through
        per-example streams (:class:`bastion.rng.ExampleRNG`): example ``i``'s draws depend on the seed and
        its id only, ``example_ids[i]`` (default ``i``), so attacking a slice with its ids gives that slice
        of the whole run, whatever the batch. A ``generator`` instead shares one stream across the batch.
        """
        clf = as_classifier(model, bounds=threat.bounds)
        if not isinstance(threat, ThreatModel):
            raise ThreatModelError(f"threat must be a ThreatModel, got {type(threat).__name__}")
        if threat.norm not in self.norms:
            valid = ", ".join(sorted(n.value for n in self.norms))
            raise ThreatModelError(f"{self.name} supports norms {valid}; got {threat.norm.value}")
        if tuple(threat.bounds) != tuple(clf.bounds):
            raise ThreatModelError(
                f"threat bounds {threat.bounds} differ from the model's bounds {clf.bounds}; "
                "build the ThreatModel with bounds=model.bounds"
            )
        y, targets = check_inputs(clf, x, y, targets=targets)
        draws: Randomness
        if generator is None:
            seed = 0 if seed is None else int(seed)
            ids = torch.arange(x.shape[0]) if example_ids is None else torch.as_tensor(example_ids)
            if ids.shape != (x.shape[0],):
                raise AttackError(
                    f"example_ids must hold one id per input ({x.shape[0]}), got {tuple(ids.shape)}"
                )
            try:
                draws = ExampleRNG(seed, ids, device=x.device)
            except ValueError as exc:  # ids that repeat
                raise AttackError(str(exc)) from None
        else:
            draws = generator
        x = x.detach()
        counter = CountingClassifier(clf)
        start = time.perf_counter()
        with torch.no_grad():
            todo = ~is_success(counter(x), y, targets)
        x_adv = x.clone()
        idx = todo.nonzero().flatten()
        if idx.numel():
            try:
                with torch.enable_grad():
                    found = self._run(
                        counter,
                        x[idx].clone(),
                        y[idx],
                        threat,
                        targets=None if targets is None else targets[idx],
                        generator=rows(draws, idx),
                    )
            except RuntimeError as exc:  # autograd's words for a cut graph, said in ours
                if "does not require grad" not in str(exc):
                    raise
                raise ModelContractError(NOT_DIFFERENTIABLE) from None
            if not isinstance(found, torch.Tensor) or found.shape != x[idx].shape:
                raise AttackError(f"{self.name}._run returned a wrong shape; this is a bug in the attack")
            x_adv[idx] = found.detach().to(x.dtype)
        x_adv = threat.project(x, x_adv)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            logits = torch.cat([clf(x_adv[i : i + 1024]) for i in range(0, x_adv.shape[0], 1024)])
        return AttackResult(
            x_adv=x_adv,
            success=is_success(logits, y, targets),
            distance=threat.distance(x, x_adv),
            predictions=logits.argmax(dim=1),
            queries=counter.queries,
            gradient_evals=counter.gradient_evals,
            seconds=seconds,
            attack=self.name,
            params=self.params(),
            seed=seed,
        )

    @abstractmethod
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
        """Return candidate adversarials for the inputs the model still classifies correctly.

        ``x`` is a detached copy the subclass may overwrite. The base class projects and verifies.
        """


def check_positive(
    name: str,
    value: float,
    *,
    integer: bool = False,
    allow_zero: bool = False,
    error: type[Exception] = AttackError,
) -> None:
    """Raise ``error`` unless ``value`` is a finite positive number (an int when ``integer``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise error(f"{name} must be {kind} {bound}, got {value!r}")
