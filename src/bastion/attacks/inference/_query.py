"""The black-box view of a victim shared by the membership attacks: released probabilities, counted.

Every attack sees the target only through ``torch.softmax(model(x), 1)`` (or its argmax) under
``torch.no_grad()``: an output policy that returns ``log(released probabilities)`` as its logits is then
attacked as it releases, and a remote model the same way. ``queries`` counts the rows sent.
"""

from __future__ import annotations

import torch

from bastion.attacks.base import check_batch
from bastion.errors import DataError
from bastion.model import Classifier

__all__ = ["LOG_FLOOR", "Victim", "check_targets", "logit_confidence", "true_log_prob"]

LOG_FLOOR = -100.0
"""Log-probabilities are floored here (about log 3.7e-44): a rounded or one-hot release gives exact
zeros, whose log would be -inf and turn every statistic into inf/nan."""


class Victim:
    """Counts the rows sent to ``model`` and returns what it released, in batches of ``batch_size``."""

    def __init__(self, model: Classifier, batch_size: int = 512) -> None:
        self.model = model
        self.batch_size = int(batch_size)
        self.queries = 0

    @torch.no_grad()
    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the released probabilities (N, K), float64 on the CPU, floored at :data:`LOG_FLOOR`.

        ``log_softmax`` of the output is the log of ``softmax(model(x))`` computed without the float32
        underflow of ``1 - p`` for confident rows; it carries no more information than the probabilities.
        """
        device = getattr(self.model, "device", None)
        parts = []
        for lo in range(0, x.shape[0], self.batch_size):
            chunk = x[lo : lo + self.batch_size]
            if isinstance(device, torch.device):
                chunk = chunk.to(device)
            self.queries += int(chunk.shape[0])
            logits = self.model(chunk)
            parts.append(torch.log_softmax(logits.double(), dim=1).clamp_min(LOG_FLOOR).cpu())
        return torch.cat(parts)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Released probabilities (N, K), float64."""
        return self.log_probs(x).exp()


def true_log_prob(log_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p_y (N,) from log-probabilities (N, K) and labels (N,)."""
    return log_probs.gather(1, y.view(-1, 1).to(log_probs.device)).squeeze(1)


def logit_confidence(log_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LiRA's logit-scaled confidence phi = log p_y - log(1 - p_y) (N,), computed stably as
    log p_y - logsumexp_{j != y} log p_j (never forms 1 - p_y, which is 0 in floating point for
    confident rows). Bounded by the floor: |phi| <= -LOG_FLOOR + log K."""
    y = y.to(log_probs.device)
    lp_y = true_log_prob(log_probs, y)
    others = log_probs.scatter(1, y.view(-1, 1), float("-inf"))
    return lp_y - torch.logsumexp(others, dim=1).clamp_min(LOG_FLOOR)


def check_targets(model: Classifier, x: torch.Tensor, y: torch.Tensor, is_member: torch.Tensor) -> None:
    """Raise :class:`DataError` unless x (N, ...), y (N,) labels and is_member (N,) bool agree."""
    check_batch(model, x, doing="scoring it")
    n = x.shape[0]
    if y.shape != (n,) or y.is_floating_point():
        raise DataError(f"y must hold ({n},) integer labels to match x, got {tuple(y.shape)} {y.dtype}")
    if is_member.shape != (n,) or is_member.dtype != torch.bool:
        raise DataError(
            f"is_member must be a ({n},) bool tensor (True = trained on), got {tuple(is_member.shape)} "
            f"{is_member.dtype}"
        )
