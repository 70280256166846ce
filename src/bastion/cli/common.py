"""Shared CLI plumbing: loading inputs, errors as exit code 2, atomic writes, progress bars."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bastion._files import atomic_write
from bastion.errors import BastionError, DataError

if TYPE_CHECKING:
    from bastion.data import Dataset
    from bastion.model import TorchClassifier

out = Console()
# Errors must stay one line whatever the terminal width: scripts grep them.
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

MODEL_HELP = (
    "Model to load: 'zoo:NAME' (see 'bastion zoo list'), 'FILE.py:factory' or 'package.module:factory' "
    "with --weights FILE.safetensors, or a TorchScript file."
)
DATA_HELP = (
    "Data: 'digits', 'mnist:DIR', 'fashion-mnist:DIR', 'cifar10:PATH', 'npz:FILE' (keys x, y), "
    "'folder:DIR' (a sub-folder per class), or 'csv:FILE' with --label COLUMN."
)


def unwrap_help(doc: str | None) -> str | None:
    """A command's docstring with each paragraph on one line.

    Typer's rich help keeps the docstring's line breaks and then wraps at the terminal width, which
    leaves ragged half-empty lines; joined paragraphs wrap cleanly. Paragraphs (blank-line separated)
    stay apart, and a paragraph whose lines are list items ("- ...") keeps its breaks.
    """
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    out = []
    for para in paragraphs:
        lines = [line.strip() for line in para.splitlines()]
        out.append(para if any(line.startswith(("- ", "* ")) for line in lines) else " ".join(lines))
    return "\n\n".join(out)


def friendly_errors(fn: F) -> F:
    """Turn bastion's typed errors into one line on stderr and exit code 2 (and unwrap the help text)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BastionError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except FileNotFoundError as exc:
            err.print(f"[bold red]error:[/] file not found: {exc.filename or exc}", highlight=False)
            raise typer.Exit(2) from None

    wrapper.__doc__ = unwrap_help(fn.__doc__)
    return wrapper  # type: ignore[return-value]


def parse_bounds(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"--bounds takes LOW,HIGH (e.g. 0,1), got {text!r}") from None
    return (low, high)


def load_inputs(
    model_spec: str,
    data_spec: str,
    *,
    weights: str | None,
    split: str,
    label: str | None,
    bounds: str | None,
    limit: int | None,
    seed: int,
) -> tuple[TorchClassifier, Dataset]:
    """Load data then model, and check they fit together (bounds, shapes, number of classes)."""
    from bastion.data import load_dataset
    from bastion.loading import load_model

    data = load_dataset(data_spec, split=split, label=label).take(limit, seed=seed)
    model = load_model(
        model_spec, weights=weights, bounds=parse_bounds(bounds) or data.bounds, num_classes=None
    )
    low, high = model.bounds
    if data.bounds[0] < low - 1e-6 or data.bounds[1] > high + 1e-6:
        raise DataError(
            f"data {data.name} spans [{data.bounds[0]:g}, {data.bounds[1]:g}], outside the model's bounds "
            f"[{low:g}, {high:g}]; rescale the data or pass --bounds"
        )
    try:
        with torch.no_grad():
            logits = model(data.x[:1])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise DataError(
            f"model cannot take inputs of shape {tuple(data.x.shape[1:])} from {data.name}: {first}"
        ) from None
    if logits.shape[1] != data.num_classes:
        raise DataError(f"model outputs {logits.shape[1]} classes but {data.name} has {data.num_classes}")
    return model, data


def write_json(path: Path, payload: dict[str, Any], *, what: str = "results") -> None:
    """Write JSON atomically (readers never see half a file), then say where on stderr."""
    atomic_write(path, lambda fh: fh.write(json.dumps(payload, indent=2) + "\n"), "w")
    err.print(f"{what} written to {path}")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays), "wb")  # type: ignore[arg-type]


@contextmanager
def progress_bar() -> Iterator[Progress]:
    bar = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    with bar:
        yield bar
