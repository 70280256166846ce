"""Label-only membership inference by distance to the decision boundary (Choquette-Choo, Tramer,
Carlini & Papernot, "Label-only membership inference attacks", ICML 2021; Li & Zhang, "Membership
leakage in label-only exposures", CCS 2021).

A model is more robust around the points it was trained on: members lie farther from the decision
boundary. With labels only, the distance is measured with a decision-based evasion attack, the engine's
HopSkipJump (l2, minimum norm): score = the l2 distance to the nearest adversarial found; 0 for inputs
the model already misclassifies; the input box's diameter when no adversarial is found at all (nothing
near flips the label). The attack sees only ``argmax(softmax(model(x)))``: the target is wrapped so that
HopSkipJump receives a one-hot of the released label and nothing else. Every row sent is counted,
HopSkipJump's own label checks included; queries per input are capped by ``max_queries`` (+2 checks).
"""

from __future__ import annotations

import math

import torch

from bastion.attacks.inference.base import MembershipAttack, Scored
from bastion.errors import AttackError
from bastion.model import Classifier
from bastion.threat import Bounds, ThreatModel

__all__ = ["BoundaryDistance", "LabelOracle"]


class LabelOracle:
    """A classifier view that releases only labels: logits are the one-hot of
    ``argmax(softmax(model(x)))`` (N, K); ``queries`` counts the rows sent."""

    def __init__(self, model: Classifier) -> None:
        self.model = model
        self.bounds: Bounds = model.bounds
        self.queries = 0

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += int(x.shape[0])
        probs = torch.softmax(self.model(x), 1)
        return torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1]).to(x.dtype)


class BoundaryDistance(MembershipAttack):
    """Score = l2 distance to the decision boundary found by HopSkipJump with ``max_queries`` per input."""

    name = "label-only"

    def __init__(self, max_queries: int = 1000, steps: int = 32, batch_size: int = 256) -> None:
        if max_queries < 10 or steps < 1 or batch_size < 1:
            raise AttackError("label-only: max_queries must be >= 10, steps and batch_size >= 1")
        self.max_queries = int(max_queries)
        self.steps = int(steps)
        self.batch_size = int(batch_size)

    def params(self) -> dict[str, object]:
        return {"max_queries": self.max_queries, "steps": self.steps, "batch_size": self.batch_size}

    def _score(
        self, model: Classifier, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator
    ) -> Scored:
        """Score x (N, ...), labels y (N,); ``generator`` drives HopSkipJump's starts and probes."""
        from bastion.attacks.evasion.hopskipjump import HopSkipJump

        oracle = LabelOracle(model)
        low, high = model.bounds
        diameter = math.sqrt(x[0].numel()) * (high - low)
        threat = ThreatModel("l2", diameter, bounds=model.bounds)
        hsj = HopSkipJump(
            max_queries=self.max_queries, steps=self.steps, gradient_queries_init=50, max_num_evals=200
        )
        scores = []
        for lo in range(0, x.shape[0], self.batch_size):
            sl = slice(lo, lo + self.batch_size)
            res = hsj(oracle, x[sl], y[sl], threat, generator=generator)
            flipped = res.predictions.cpu() != y[sl].cpu()
            dist = res.distance.detach().cpu().double()
            scores.append(torch.where(flipped, dist, torch.full_like(dist, diameter)))
        return Scored(torch.cat(scores), oracle.queries)
