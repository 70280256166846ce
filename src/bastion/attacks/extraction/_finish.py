"""The end of every extraction attack: a clone per budget checkpoint, measured, and the result.

Also the checks the attacks share on what they are given (the pool) and the name the card records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bastion.attacks.extraction._shift import shift_pixels
from bastion.attacks.extraction._training import CloneTraining, Factory, fit_clone, targets_for
from bastion.errors import AttackError, DataError
from bastion.model import Classifier
from bastion.threat import Bounds

__all__ = ["as_inputs", "checkpoints", "finish", "victim_name"]


def checkpoints(budget: int, budgets: tuple[int, ...]) -> list[int]:
    """The curve's budgets: every one of ``budgets`` below ``budget``, then ``budget`` itself."""
    return sorted({int(b) for b in budgets if 0 < b < budget} | {int(budget)})


def as_inputs(pool: Any, bounds: Bounds) -> tuple[torch.Tensor, str]:
    """The pool's inputs (N, ...) and a name for the card, from a Dataset or a tensor inside ``bounds``."""
    from bastion.data.dataset import Dataset

    if isinstance(pool, Dataset):
        x, name = pool.x, pool.name
    elif isinstance(pool, torch.Tensor) and pool.is_floating_point() and pool.dim() >= 2:
        x, name = pool, "tensor"
    else:
        raise AttackError(
            f"the pool must be a bastion Dataset or a float tensor (N, ...), got {type(pool).__name__}"
        )
    if x.shape[0] and (float(x.min()) < bounds[0] - 1e-6 or float(x.max()) > bounds[1] + 1e-6):
        raise DataError(
            f"the pool's inputs span [{float(x.min()):g}, {float(x.max()):g}], outside the victim's bounds "
            f"[{bounds[0]:g}, {bounds[1]:g}]; rescale them"
        )
    return x, name


def victim_name(victim: Any) -> str:
    """The name of the model under counting/policy wrappers (their ``.model``), for the card."""
    for _ in range(8):
        if isinstance(getattr(victim, "name", None), str):
            return str(victim.name)
        if not hasattr(victim, "model"):
            break
        victim = victim.model
    return type(victim).__name__


def finish(
    *,
    attack: str,
    params: dict[str, Any],
    victim: Classifier,
    x_q: torch.Tensor,
    released: torch.Tensor,
    output: str,
    budgets: tuple[int, ...],
    factory: Factory | None,
    training: CloneTraining,
    test: Any,
    reference: Classifier | None,
    seed: int,
    pool_name: str,
    progress: Callable[[int, int], None] | None,
) -> Any:
    """Train a clone from scratch on the first b queries for every budget checkpoint b (the queries are
    reused: the total is the largest budget), measure each on ``test``, and build the result."""
    from bastion.attacks.extraction.clone import CurvePoint, ExtractionResult, small_cnn
    from bastion.model import predict

    k = int(released.shape[1])
    shape = tuple(int(d) for d in x_q.shape[1:])
    build: Factory = factory if factory is not None else (lambda: small_cnn(shape, k))
    targets = targets_for(released, output)
    truth = None
    evaluation_queries = 0
    if test is not None:
        judge = reference if reference is not None else victim
        truth = predict(judge, test.x).argmax(1)
        evaluation_queries = 0 if reference is not None else len(test)
    points: list[int] = checkpoints(int(x_q.shape[0]), budgets)
    curve = []
    clone = None
    for i, b in enumerate(points):
        clone = fit_clone(build, x_q[:b], targets[:b], victim.bounds, training, seed, name=f"{attack}-clone")
        acc = fid = None
        if test is not None and truth is not None:
            pred = predict(clone, test.x).argmax(1)
            acc = float((pred == test.y.to(pred.device)).float().mean())
            fid = float((pred == truth.to(pred.device)).float().mean())
        curve.append(CurvePoint(b, acc, fid))
        if progress is not None:
            progress(i + 1, len(points))
    if clone is None:
        raise AttackError("no queries to train a clone on: the budget must be at least 1")
    info = {
        "attack": attack,
        "victim": victim_name(victim),
        "pool": pool_name,
        "test_data": None if test is None else getattr(test, "name", "test"),
        "architecture": "small_cnn" if factory is None else getattr(factory, "__name__", repr(factory)),
        "input_shape": list(shape),
        "training": training.to_dict(),
        "shift_pixels": shift_pixels(shape, training.shift) if output == "labels" else 0,
    }
    return ExtractionResult(clone, int(x_q.shape[0]), curve, output, params, seed, evaluation_queries, info)
