"""Spatial attacks: rotate and translate an image until the model errs.

Engstrom, Tran, Tsipras, Schmidt & Madry, "Exploring the Landscape of Spatial Robustness" (ICML 2019):
worst-of-k random transforms, the exhaustive grid over the ranges, and first-order (projected gradient)
ascent on the transform's parameters. The paper finds the grid strongest and first-order weakest: the
loss is non-concave in (angle, tx, ty), so gradient steps stall in local maxima.

:class:`SpatialAttack.__call__` is final. It validates the inputs, runs the subclass's ``_search`` on the
inputs the model classifies correctly, clamps the returned params into the threat, re-renders
``x_adv = spatial_transform(x, params)`` itself and recomputes success on the model, counting queries
and gradient evaluations. No attack can return an out-of-threat or stale result.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.base import CountingClassifier, check_inputs, check_positive
from bastion.attacks.physical.spatial_threat import SpatialThreat, spatial_transform
from bastion.errors import AttackError, DataError, ThreatModelError
from bastion.model import Classifier, as_classifier

__all__ = ["SpatialAttack", "SpatialResult", "pick"]


@dataclass(frozen=True)
class SpatialResult:
    """What a spatial attack returns; produced by :class:`SpatialAttack` only.

    - ``x_adv`` (N, C, H, W): ``spatial_transform(x, params)`` (``x`` itself where ``correct`` is False).
    - ``params`` (N, 3): ``(angle in degrees, tx, ty)``, inside the threat; zeros where ``correct`` is False.
    - ``success`` (N,) bool: the model misclassifies ``x_adv`` and classified ``x`` correctly.
    - ``correct`` (N,) bool: the model classified ``x`` correctly (only those inputs are attacked).
    - ``predictions`` (N,): the model's labels on ``x_adv``.
    - ``queries``: inputs forwarded through the model (the clean pass and the search; not the final
      verification); ``gradient_evals``: inputs back-propagated through it.
    """

    x_adv: torch.Tensor
    params: torch.Tensor
    success: torch.Tensor
    correct: torch.Tensor
    predictions: torch.Tensor
    queries: int
    gradient_evals: int
    seconds: float
    attack: str
    attack_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def success_rate(self) -> float:
        """Fooled / correctly classified inputs (0.0 when none was classified correctly)."""
        n = int(self.correct.sum())
        return float(self.success.sum()) / n if n else 0.0

    def __len__(self) -> int:
        return int(self.success.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary; the means run over the correctly classified inputs."""
        p = self.params[self.correct].abs()
        return {
            "attack": self.attack,
            "attack_params": dict(self.attack_params),
            "seed": self.seed,
            "n": len(self),
            "n_correct": int(self.correct.sum()),
            "success_rate": self.success_rate,
            "mean_abs_angle": float(p[:, 0].mean()) if p.numel() else 0.0,
            "mean_abs_translation": float(p[:, 1:].mean()) if p.numel() else 0.0,
            "queries": self.queries,
            "gradient_evals": self.gradient_evals,
            "seconds": self.seconds,
        }


class SpatialAttack(ABC):
    """Base of the spatial attacks: hyperparameters at construction, model/data/threat at call time::

    result = GridSearch()(model, x, y, SpatialThreat(30, 0.1), seed=0)
    """

    name: ClassVar[str] = "spatial"

    def __init__(self, *, batch_size: int = 2048) -> None:
        check_positive("batch_size", batch_size, integer=True)
        self.batch_size = int(batch_size)

    def params(self) -> dict[str, Any]:
        """The hyperparameters this attack was built with (public attributes of simple types)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and isinstance(v, int | float)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def __call__(
        self,
        model: Classifier | nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: SpatialThreat,
        *,
        seed: int = 0,
    ) -> SpatialResult:
        """Attack images ``x`` (N, C, H, W), labels ``y`` (N,), under ``threat``; same seed, same result."""
        if not isinstance(threat, SpatialThreat):
            raise ThreatModelError(f"threat must be a SpatialThreat, got {type(threat).__name__}")
        clf = as_classifier(model, bounds=threat.bounds)
        if tuple(threat.bounds) != tuple(clf.bounds):
            raise ThreatModelError(
                f"threat bounds {threat.bounds} differ from the model's bounds {clf.bounds}; "
                "build the SpatialThreat with bounds=model.bounds"
            )
        if isinstance(x, torch.Tensor) and x.dim() != 4:
            raise DataError(f"spatial attacks need images (N, C, H, W), got shape {tuple(x.shape)}")
        y, _ = check_inputs(clf, x, y)
        generator = torch.Generator(device=x.device).manual_seed(int(seed))
        x = x.detach()
        counter = CountingClassifier(clf)
        start = time.perf_counter()
        with torch.no_grad():
            correct = counter(x).argmax(dim=1) == y
        params = torch.zeros(x.shape[0], 3, dtype=x.dtype, device=x.device)
        idx = correct.nonzero().flatten()
        if idx.numel():
            found = self._search(counter, x[idx].clone(), y[idx], threat, generator=generator)
            if not isinstance(found, torch.Tensor) or found.shape != (idx.numel(), 3):
                raise AttackError(f"{self.name}._search must return params ({idx.numel()}, 3); a bug in it")
            found = found.detach().to(x.dtype)
            if not bool(torch.isfinite(found).all()):
                raise AttackError(f"{self.name}._search returned non-finite params; a bug in the attack")
            params[idx] = threat.clamp(found)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            x_adv = x.clone()
            if idx.numel():
                x_adv[idx] = spatial_transform(x[idx], params[idx], threat.bounds)
            logits = torch.cat(
                [clf(x_adv[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
            )
        predictions = logits.argmax(dim=1)
        return SpatialResult(
            x_adv=x_adv,
            params=params,
            success=correct & (predictions != y),
            correct=correct,
            predictions=predictions,
            queries=counter.queries,
            gradient_evals=counter.gradient_evals,
            seconds=seconds,
            attack=self.name,
            attack_params=self.params(),
            seed=int(seed),
        )

    @abstractmethod
    def _search(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: SpatialThreat,
        *,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Return params (n, 3) for the inputs ``x`` (n, C, H, W) the model classifies correctly.

        ``x`` is a detached copy. The base class clamps the params, renders and verifies.
        """

    @torch.no_grad()
    def _score(
        self, model: Classifier, x: torch.Tensor, y: torch.Tensor, candidates: torch.Tensor, bounds: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and fooled flag (n, G) of candidates (n, G, 3), in chunks of ``batch_size`` images."""
        n, g = candidates.shape[:2]
        flat = candidates.reshape(n * g, 3)
        owner = torch.arange(n, device=x.device).repeat_interleave(g)
        loss, fooled = [], []
        for i in range(0, n * g, self.batch_size):
            rows = owner[i : i + self.batch_size]
            logits = model(spatial_transform(x[rows], flat[i : i + self.batch_size], bounds))
            loss.append(F.cross_entropy(logits, y[rows], reduction="none"))
            fooled.append(logits.argmax(dim=1) != y[rows])
        return torch.cat(loss).view(n, g), torch.cat(fooled).view(n, g)


def pick(candidates: torch.Tensor, loss: torch.Tensor, fooled: torch.Tensor) -> torch.Tensor:
    """Per row, the candidate (n, G, 3) -> (n, 3) that fools the model with the highest loss, else the
    highest loss: a fooling candidate always wins, so an input is fooled when any candidate fools it."""
    key = torch.where(fooled, loss.clamp_min(0) + 1.0, loss.clamp_min(0) / (1.0 + loss.clamp_min(0)))
    best = key.argmax(dim=1)
    return candidates[torch.arange(candidates.shape[0], device=candidates.device), best]
