"""Output policies: what a deployed classifier's API releases, as a classifier wrapper attacks can query.

A policy turns the model's probabilities ``p = softmax(logits)`` (N, K) into the released matrix (N, K):

- ``probs``: ``p`` itself.
- ``topK`` (``top1``, ``top3`` ...): the K largest probabilities *as they are* (not renormalised); every
  other class gets 0. A row then sums to less than 1: the missing mass is information the API withholds.
- ``roundD`` (``round2`` ...): ``p`` rounded to D decimals (round half to even). Rows need not sum to 1.
- ``labels``: the one-hot vector of the model's predicted class (label-only API).
- ``reverse-sigmoid:BETA[:GAMMA]``: the deceptive perturbation of Lee, Edwards, Molloy & Srivastava,
  "Defending Against NN Model Stealing Attacks Using Deceptive Perturbations", IEEE S&P Workshops 2019
  (arXiv:1806.00054), eq. for the reverse sigmoid:
  ``p' = alpha * (p - beta * (sigmoid(gamma * logit(p)) - 1/2))``, with ``alpha`` normalising each row to
  sum 1 (entries below 0 are clipped first, as in ART's ``ReverseSigmoid``; ``p`` is clamped to
  [1e-9, 1 - 1e-9] before the logit). GAMMA defaults to 0.1 (ART's default). The perturbation is
  not monotone in ``p``: the ranking of the unlikely classes is scrambled (what misleads a clone trained
  on the scores) and, for a large BETA, even the top class can change.

:class:`PolicyClassifier` is the attacker's view of a model under a policy: ``released(x)`` gives the
released matrix and ``__call__(x)`` returns ``log(max(released, 1e-12))``, so black-box attacks that read
``softmax(model(x))`` or ``model(x).argmax(1)`` work unchanged. No gradient reaches the model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from bastion.errors import DefenseError
from bastion.model import Classifier, as_classifier
from bastion.threat import Bounds

__all__ = ["FLOOR", "OutputPolicy", "PolicyClassifier", "PolicyKind"]

PolicyKind = Literal["probs", "top", "round", "labels", "reverse-sigmoid"]
FLOOR = 1e-12
"""Released probabilities below this become ``log(FLOOR)`` (about -27.6) in :class:`PolicyClassifier`."""

_CLIP = 1e-9  # reverse sigmoid: p clamped into [_CLIP, 1 - _CLIP] before its logit
_VALID = "probs, labels, topK (e.g. top1, top3), roundD (e.g. round2), reverse-sigmoid:BETA[:GAMMA]"
_TOP = re.compile(r"^top(\d+)$")
_ROUND = re.compile(r"^round(\d+)$")


@dataclass(frozen=True)
class OutputPolicy:
    """One output policy. Build it with :meth:`parse` (``"top3"``) or directly
    (``OutputPolicy("top", k=3)``); ``str(policy)`` gives the spec back (``parse(str(p)) == p``)."""

    kind: PolicyKind = "probs"
    k: int | None = None
    """How many classes ``top`` releases (>= 1)."""
    decimals: int | None = None
    """How many decimals ``round`` keeps (>= 0)."""
    beta: float | None = None
    """Reverse sigmoid magnitude (> 0)."""
    gamma: float = 0.1
    """Reverse sigmoid convergence parameter (> 0); only ``reverse-sigmoid`` reads it."""

    def __post_init__(self) -> None:
        if self.kind == "top" and not _is_int(self.k, 1):
            raise DefenseError(f"the top policy needs k >= 1 classes, got k={self.k!r} (e.g. top3)")
        if self.kind == "round" and not _is_int(self.decimals, 0):
            raise DefenseError(f"the round policy needs decimals >= 0, got {self.decimals!r} (e.g. round2)")
        if self.kind == "reverse-sigmoid":
            for name, value in (("beta", self.beta), ("gamma", self.gamma)):
                if not (isinstance(value, int | float) and not isinstance(value, bool)) or not (
                    math.isfinite(value) and value > 0
                ):
                    raise DefenseError(
                        f"reverse-sigmoid needs a finite {name} > 0, got {value!r} (e.g. reverse-sigmoid:0.5)"
                    )
        if self.kind not in ("probs", "top", "round", "labels", "reverse-sigmoid"):
            raise DefenseError(f"unknown output policy kind {self.kind!r}; valid forms: {_VALID}")

    @classmethod
    def parse(cls, text: str | OutputPolicy) -> OutputPolicy:
        """From a spec: ``probs``, ``labels``, ``top3``, ``round2``, ``reverse-sigmoid:0.5[:0.1]``."""
        if isinstance(text, OutputPolicy):
            return text
        spec = str(text).strip().lower()
        if spec in ("probs", "labels"):
            return cls(spec)  # type: ignore[arg-type]
        if m := _TOP.match(spec):
            return cls("top", k=int(m[1]))
        if m := _ROUND.match(spec):
            return cls("round", decimals=int(m[1]))
        head, _, rest = spec.partition(":")
        if head == "reverse-sigmoid" and rest:
            parts = rest.split(":")
            try:
                numbers = [float(v) for v in parts]
            except ValueError:
                numbers = []
            if len(numbers) in (1, 2):
                return cls("reverse-sigmoid", beta=numbers[0], gamma=numbers[1] if len(numbers) == 2 else 0.1)
        raise DefenseError(f"unknown output policy {text!r}; valid forms: {_VALID}")

    def __str__(self) -> str:
        if self.kind == "top":
            return f"top{self.k}"
        if self.kind == "round":
            return f"round{self.decimals}"
        if self.kind == "reverse-sigmoid":
            return f"reverse-sigmoid:{self.beta:g}:{self.gamma:g}"
        return self.kind

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """The released matrix (N, K) for the model's ``logits`` (N, K); detached, same dtype and device."""
        logits = logits.detach()
        if self.kind == "labels":
            return nn.functional.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
        p = torch.softmax(logits, dim=1)
        if self.kind == "top":
            k = min(int(self.k or 1), p.shape[1])
            top = p.topk(k, dim=1)
            return torch.zeros_like(p).scatter(1, top.indices, top.values)
        if self.kind == "round":
            return torch.round(p, decimals=int(self.decimals or 0))
        if self.kind == "reverse-sigmoid":
            return _reverse_sigmoid(p, float(self.beta or 0.0), float(self.gamma))
        return p


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _reverse_sigmoid(p: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """Lee et al. 2019: ``alpha * (p - beta * (sigmoid(gamma * logit(p)) - 1/2))``, clipped at 0."""
    clipped = p.clamp(_CLIP, 1.0 - _CLIP)
    perturbation = beta * (torch.sigmoid(gamma * torch.logit(clipped)) - 0.5)
    out = (p - perturbation).clamp_min(0.0)
    # Never all zero for K >= 2: the least likely class has p <= 1/2, so its perturbation is <= 0.
    return out / out.sum(dim=1, keepdim=True).clamp_min(torch.finfo(out.dtype).tiny)


class PolicyClassifier:
    """``model`` behind an output policy: the attacker's view of a deployed API; a Classifier.

    - ``released(x)`` (N, K): exactly what the API releases for ``x`` (N, ...), see :class:`OutputPolicy`.
    - ``__call__(x)`` (N, K): ``log(max(released(x), FLOOR))``. Hence ``argmax`` of the output is the
      argmax of the released matrix, and ``softmax(__call__(x)) = r / r.sum(1)`` with
      ``r = max(released(x), FLOOR)``: equal to the released matrix (up to the 1e-12 floor) for the
      policies whose rows sum to 1 (``probs``, ``labels``, ``reverse-sigmoid``), and its row-renormalised
      version for ``topK`` and ``roundD``. Attacks that need the released values themselves (the mass a
      top-k row withholds) read ``released(x)``.
    - The model runs under ``torch.no_grad()`` and the output is a fresh tensor without ``grad_fn``:
      autograd cannot reach the model through this wrapper (gradient attacks fail with
      ``ModelContractError``, as against a real API). ``model`` is kept for reports, never for attacks.
    """

    def __init__(self, model: Classifier | nn.Module, policy: str | OutputPolicy = "probs") -> None:
        self.model = as_classifier(model)
        self.bounds: Bounds = self.model.bounds
        self.policy = OutputPolicy.parse(policy)

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def released(self, x: torch.Tensor) -> torch.Tensor:
        """The released matrix (N, K) for inputs ``x`` (N, ...); no gradient, never mutates ``x``."""
        with torch.no_grad():
            return self.policy.apply(self.model(x.detach()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``log(max(released(x), 1e-12))`` (N, K): softmax of it is the (renormalised) released matrix."""
        with torch.no_grad():
            return self.released(x).clamp_min(FLOOR).log()

    def __repr__(self) -> str:
        return f"PolicyClassifier({self.model!r}, policy={str(self.policy)!r})"
