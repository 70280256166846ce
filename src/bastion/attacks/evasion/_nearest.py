"""The class whose linearised decision boundary is nearest to the input (C&W, FMN)."""

from __future__ import annotations

import torch

from bastion.attacks.base import differentiable
from bastion.model import Classifier

__all__ = ["nearest_boundary"]


@torch.no_grad()
def nearest_boundary(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    at: torch.Tensor | None = None,
    candidates: int = 10,
    dual: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance ``|Z_j - Z_y| / ||grad (Z_j - Z_y)||_dual`` from ``x`` (N, ...) to the linearised boundary
    of each candidate class ``j``: the ``candidates`` highest-scoring classes other than ``y`` (N,), or the
    target only, when ``targets`` (N,) is given. ``dual`` is the dual of the distance's norm (2 for l2, 1 for
    linf). With ``at`` (N, ...), the model is linearised there instead (the candidates are those ranked
    there) and the distance is still measured from ``x``: ``|Z_j - Z_y + grad . (x - at)|`` on top.
    Returns the smallest distance and its class, (N,) each; one backward pass per candidate."""
    with torch.enable_grad():
        xr = (x if at is None else at).clone().requires_grad_(True)
        logits = differentiable(model(xr))
        true = logits.gather(1, y[:, None])
        if targets is not None:
            classes = targets[:, None]
        else:
            k = min(candidates, logits.shape[1] - 1)
            classes = logits.detach().scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices
        gaps = logits.gather(1, classes) - true
        dists = []
        for j in range(classes.shape[1]):
            (grad,) = torch.autograd.grad(gaps[:, j].sum(), xr, retain_graph=j < classes.shape[1] - 1)
            gap = gaps[:, j].detach()
            if at is not None:
                gap = gap + ((x - at) * grad).flatten(1).sum(dim=1)
            dists.append(gap.abs() / grad.flatten(1).norm(p=dual, dim=1).clamp_min(1e-12))
    best, column = torch.stack(dists, dim=1).min(dim=1)
    return best, classes.gather(1, column[:, None]).squeeze(1)
