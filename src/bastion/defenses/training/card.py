"""What a hardened model's card records, and the evaluation that fills its robust accuracy."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import torch

from bastion.data.dataset import Dataset
from bastion.defenses.training.config import TrainingConfig
from bastion.defenses.training.objective import Objective
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

__all__ = ["measure", "model_card"]


def measure(
    clf: TorchClassifier,
    data: Dataset,
    threat: ThreatModel | None,
    preset: str,
    limit: int,
    seed: int,
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, Any]:
    from bastion.evaluation import evaluate
    from bastion.model import predict

    x, y = data.x[:limit], data.y[:limit]
    if threat is None:
        acc = float((predict(clf, x).argmax(1) == y).float().mean())
        return {"data": data.name, "n": len(y), "clean_accuracy": acc}
    start = time.perf_counter()
    res = evaluate(clf, x, y, threat, preset, seed=seed, progress=progress)
    return {
        "data": data.name,
        "n": len(y),
        "preset": preset,
        "threat": str(threat),
        "clean_accuracy": res.clean_accuracy,
        "robust_accuracy": res.robust_accuracy,
        "seconds": time.perf_counter() - start,
    }


def model_card(
    clf: TorchClassifier,
    base: TorchClassifier,
    data: Dataset,
    method: str,
    objective: Objective,
    threat: ThreatModel | None,
    cfg: TrainingConfig,
    seconds: float,
    stopped: bool,
    best: float | None,
    notes: list[str],
    history: list[dict[str, Any]],
    privacy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card's fields. ``privacy`` (DP-SGD only) holds the accountant's record: ``epsilon`` is what
    the accountant computes for the steps really taken (``noise_multiplier``, ``sample_rate``,
    ``steps``) at ``delta``, not the target."""
    card: dict[str, Any] = {
        "method": method,
        "method_options": objective.params(),
        "base_model": base.name,
        "threat": None
        if threat is None
        else {"norm": str(threat.norm), "epsilon": threat.epsilon, "bounds": list(threat.bounds)},
        "training": cfg.to_dict(),
        "train_data": {"name": data.name, "n": len(data)},
        "train_seconds": round(seconds, 1),
        "stopped_early": stopped,
        "best_epoch": best,
        "notes": notes,
        "history": history,
        "bounds": list(clf.bounds),
        "num_classes": clf.num_classes,
        "mean": None if clf.mean is None else clf.mean.flatten().tolist(),
        "std": None if clf.std is None else clf.std.flatten().tolist(),
        "parameters": sum(p.numel() for p in clf.module.parameters()),
        "torch_version": torch.__version__,
        "device": str(clf.device),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
    }
    if privacy is not None:
        card["privacy"] = privacy
    return card
