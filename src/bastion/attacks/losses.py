"""Per-sample attack losses on logits (N, K) -> (N,). Higher is better for the attacker."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["LossFn", "ce_loss", "dlr_loss", "get_loss", "margin_loss", "targeted_dlr_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def ce_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the true class (untargeted) or minus that of the target (targeted)."""
    if targets is not None:
        return -F.cross_entropy(logits, targets, reduction="none")
    return F.cross_entropy(logits, y, reduction="none")


def margin_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Best other logit minus the true logit (untargeted), or target logit minus the best other."""
    if targets is not None:
        target_logit = logits.gather(1, targets[:, None]).squeeze(1)
        others = logits.scatter(1, targets[:, None], float("-inf"))
        return target_logit - others.amax(dim=1)
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return others.amax(dim=1) - true_logit


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), shift- and scale-invariant in the logits.

    Untargeted: -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3). With ``targets`` it is the targeted DLR:
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).
    """
    if targets is not None:
        return targeted_dlr_loss(logits, y, targets)
    if logits.shape[1] < 3:
        return margin_loss(logits, y) / (logits.abs().amax(dim=1) + 1e-12)
    top = logits.sort(dim=1, descending=True).values
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return -(true_logit - others) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020); needs at least 4 classes, falls back to a scaled margin."""
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    target_logit = logits.gather(1, targets[:, None]).squeeze(1)
    if logits.shape[1] < 4:
        return (target_logit - true_logit) / (logits.abs().amax(dim=1) + 1e-12)
    top = logits.sort(dim=1, descending=True).values
    return -(true_logit - target_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


_LOSSES: dict[str, LossFn] = {"ce": ce_loss, "dlr": dlr_loss, "margin": margin_loss}


def get_loss(name: str) -> LossFn:
    from bastion.errors import AttackError

    try:
        return _LOSSES[name]
    except KeyError:
        raise AttackError(f"unknown loss {name!r}; use one of: {', '.join(sorted(_LOSSES))}") from None
