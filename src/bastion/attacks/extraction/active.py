"""Uncertainty sampling: spend an extraction budget where the clone is least sure of the victim.

Pal et al., "ActiveThief: Model Extraction Using Active Learning and Unannotated Public Data", AAAI
2020. A random first round is answered by the victim and a clone trained on it; every later round sends
the pool inputs on which that clone's top-1 and top-2 probabilities are closest (the paper's
uncertainty strategy ranks by entropy; the margin ranks the same way near a two-class boundary, where
nearly all of the choices lie), answers are added, and the clone is retrained. The rounds double the
queries made so far (initial share of the budget, then x2, x4, ... until the budget), so the early
checkpoints of a budget curve already benefit. Choosing costs no victim queries: only the clone is
asked about the rest of the pool.

Why it matters against label-only APIs: a natural pool unlike the victim's data is answered with a few
classes most of the time (an MNIST model calls 28% of random Fashion-MNIST images "2" and 3% "5"), so
random queries teach the clone little about the rare classes and their boundaries; uncertain inputs
sit on those boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from bastion.attacks.extraction._oracle import Oracle
from bastion.attacks.extraction._training import CloneTraining, fit_clone, targets_for
from bastion.model import Classifier

__all__ = ["round_sizes", "uncertainty_queries"]


def round_sizes(budget: int, initial: float) -> list[int]:
    """Queries made by the end of each round: ``initial`` share of ``budget`` (at least 1), doubling,
    the last round ending exactly at ``budget``."""
    ends = [max(1, round(initial * budget))]
    while ends[-1] < budget:
        ends.append(min(budget, ends[-1] * 2))
    return ends


def uncertainty_queries(
    oracle: Oracle,
    x_pool: torch.Tensor,
    order: torch.Tensor,
    build: Callable[[int], torch.nn.Module],
    output: str,
    training: CloneTraining,
    initial: float,
    seed: int,
    progress: Callable[[str, int, int], None] | None = None,
    score_batch: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spend the oracle's whole budget on pool inputs: ``order`` (a seeded permutation of the pool)
    gives the random first round and breaks ties; later rounds take the least-margin inputs of a clone
    (``build(k)``: untrained, k classes) trained on every answer so far (``training`` at half its
    steps: it only ranks). Returns the inputs and released probabilities in the order they were sent."""
    ends = round_sizes(oracle.budget, initial)
    ranker_training = replace(training, steps=max(1, training.steps // 2))
    sent = order[: ends[0]]
    xs, ps = [x_pool[sent]], [oracle.released(x_pool[sent])]
    k = int(ps[0].shape[1])
    left = torch.ones(x_pool.shape[0], dtype=torch.bool, device=x_pool.device)
    left[sent] = False
    for r, end in enumerate(ends[1:]):
        if progress is not None:
            progress("queries", oracle.queries, oracle.budget)
        x_so_far, p_so_far = torch.cat(xs), torch.cat(ps)
        ranker = fit_clone(
            lambda: build(k),
            x_so_far,
            targets_for(p_so_far, output),
            _bounds(oracle),
            ranker_training,
            seed + r,
        )
        candidates = order[left[order]]  # unsent inputs, in the seeded order (stable ties)
        margin = torch.cat(
            [
                _margin(ranker, x_pool[candidates[lo : lo + score_batch]])
                for lo in range(0, len(candidates), score_batch)
            ]
        )
        n = end - oracle.queries
        pick = candidates[torch.sort(margin, stable=True).indices[:n].to(candidates.device)]
        left[pick] = False
        xs.append(x_pool[pick])
        ps.append(oracle.released(x_pool[pick]))
    return torch.cat(xs), torch.cat(ps)


def _bounds(oracle: Oracle) -> tuple[float, float]:
    return oracle.victim.bounds


def _margin(clone: Classifier, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        top = torch.softmax(clone(x), 1).topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]).cpu()
