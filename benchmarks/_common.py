"""Shared benchmark plumbing: models, data, timing, markdown tables."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from bastion import zoo
from bastion.data import load_dataset
from bastion.model import TorchClassifier

DATA_ROOT = os.environ.get(
    "BASTION_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
)

DATASETS = {"digits-cnn": "digits", "digits-mlp": "digits", "mnist-cnn": "mnist", "cifar10-cnn": "cifar10"}


def data_spec(model_name: str) -> str:
    from bastion.zoo.architectures import spec

    kind = DATASETS.get(model_name) or spec(model_name).dataset
    return kind if kind == "digits" else f"{kind}:{os.path.join(DATA_ROOT, kind)}"


def load(model_name: str, n: int, *, seed: int = 0) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    """The zoo model and ``n`` test samples it classifies correctly (a seeded subset).

    ``take`` keeps its indices in ascending order and the CIFAR-10 test file is sorted by class, so the
    ``n`` are drawn at random among the correct ones, not the first ``n`` (which were mostly the low
    classes until 2026-12-06; comparisons in one table were always on identical inputs)."""
    clf = zoo.load(model_name)
    ds = load_dataset(data_spec(model_name), split="test").take(max(n * 2, n + 100), seed=seed)
    with torch.no_grad():
        ok = (clf(ds.x).argmax(1) == ds.y).nonzero().flatten()
    pick = ok[torch.randperm(ok.numel(), generator=torch.Generator().manual_seed(seed))[:n]].sort().values
    return clf, ds.x[pick].contiguous(), ds.y[pick].contiguous()


class Normalised(nn.Module):
    """The zoo model as a plain nn.Module in input space, for peer libraries."""

    def __init__(self, clf: TorchClassifier) -> None:
        super().__init__()
        self.clf = clf
        self.inner = clf.module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clf(x)


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> str:
    import platform

    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}"
    )
