"""Shared CLI plumbing: loading inputs, errors as exit code 2, atomic writes, progress bars."""

from __future__ import annotations

import functools
import inspect
import json
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bastion._files import atomic_write
from bastion.errors import BastionError, DataError, ModelContractError, ThreatModelError

if TYPE_CHECKING:
    from bastion.data import Dataset
    from bastion.model import Classifier, TorchClassifier

out = Console()
# Errors must stay one line whatever the terminal width: scripts grep them.
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

MODEL_HELP = (
    "Model to load: 'zoo:NAME' (see 'bastion zoo list'), 'FILE.py:factory' or 'package.module:factory' "
    "with --weights FILE.safetensors, or a TorchScript file."
)
DATA_HELP = (
    "Data: 'digits', 'mnist:DIR', 'fashion-mnist:DIR', 'cifar10:PATH', 'faces:DIR' (Olivetti/AT&T), "
    "'npz:FILE' (keys x, y), "
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


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    # Python's default shows the source path and line of the warn() call: noise to a CLI user.
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def friendly_errors(fn: F) -> F:
    """Turn bastion's typed errors into one line on stderr and exit code 2, print warnings as one line
    each (and unwrap the help text)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                return fn(*args, **kwargs)
        except BastionError as exc:
            # escaped: a message may hold brackets (pip install 'bastion[privacy]') that rich would eat
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except FileNotFoundError as exc:
            missing = escape(str(exc.filename or exc))
            err.print(f"[bold red]error:[/] file not found: {missing}", highlight=False)
            raise typer.Exit(2) from None

    wrapper.__doc__ = unwrap_help(fn.__doc__)
    return wrapper  # type: ignore[return-value]


EPSILON_HELP_SUFFIX = "A number or a fraction: 0.3, 8/255."


def parse_epsilon(text: str | float, option: str = "--epsilon") -> float:
    """An epsilon from the command line: a decimal (``0.03``), a fraction (``8/255``) or ``inf``.

    A fraction is converted with one correctly rounded division, so ``8/255`` gives exactly the float
    ``8 / 255`` and :func:`bastion.threat.format_epsilon` prints it back as ``8/255``. Raises
    ThreatModelError (one line, exit code 2) for anything else or a value <= 0.
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = text.strip()
        try:
            value = math.inf if raw.lower() in ("inf", "infinity") else float(Fraction(raw))
        except (ValueError, ZeroDivisionError):
            raise ThreatModelError(
                f"{option} takes a number or a fraction such as 0.3 or 8/255, got {text!r}"
            ) from None
    if math.isnan(value) or value <= 0:
        raise ThreatModelError(f"epsilon must be > 0, got {text!r} (e.g. 8/255 for linf on [0, 1] images)")
    return value


def parse_stats(text: str | None, option: str) -> tuple[float, ...] | None:
    """``--mean``/``--std``: one number, or one per channel separated by commas (0.485,0.456,0.406)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise DataError(
            f"{option} takes numbers separated by commas (e.g. 0.5 or 0.49,0.48,0.45), got {text!r}"
        ) from None
    return values


def resolve_device(text: str | None) -> torch.device:
    """``--device``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    choice = (text or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise DataError(f"--device takes auto, cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {text}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DataError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


DEVICE_HELP = "Where the model runs: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."
MEAN_HELP = (
    "Per-channel mean the model's inputs are normalised with, inside the model (e.g. 0.4914,0.4822,0.4465); "
    "data stays in input space. For FILE.py:factory models; zoo models and factories that return a "
    "TorchClassifier carry their own."
)
STD_HELP = "Per-channel standard deviation for the normalisation (see --mean), e.g. 0.247,0.243,0.261."


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
    mean: str | None = None,
    std: str | None = None,
    device: str | None = None,
    check_bounds: bool = True,
) -> tuple[TorchClassifier, Dataset]:
    """Load data then model, and check they fit together (bounds, shapes, number of classes); both
    end up on ``device`` (see :func:`resolve_device`). ``check_bounds=False`` leaves data outside the
    model's bounds to the caller (the audit reports it as finding BA106, in a report)."""
    from bastion.loading import load_model

    return _load_and_check(
        load_model,
        model_spec,
        data_spec,
        weights=weights,
        split=split,
        label=label,
        bounds=bounds,
        limit=limit,
        seed=seed,
        mean=mean,
        std=std,
        device=device,
        check_bounds=check_bounds,
    )


def load_victim_inputs(model_spec: str, data_spec: str, **options: Any) -> tuple[Classifier, Dataset]:
    """:func:`load_inputs` (same options) for black-box commands: ``model_spec`` may also be a remote
    model (``oip:http://host:port/models/NAME``); what comes back answers outputs only."""
    from bastion.loading import load_victim

    return _load_and_check(load_victim, model_spec, data_spec, **{"check_bounds": True, **options})


_M = TypeVar("_M", bound="Classifier")


def _load_and_check(
    loader: Callable[..., _M],
    model_spec: str,
    data_spec: str,
    *,
    weights: str | None,
    split: str,
    label: str | None,
    bounds: str | None,
    limit: int | None,
    seed: int,
    mean: str | None = None,
    std: str | None = None,
    device: str | None = None,
    check_bounds: bool = True,
) -> tuple[_M, Dataset]:
    from bastion.data import load_dataset

    where = resolve_device(device)
    data = load_dataset(data_spec, split=split, label=label).take(limit, seed=seed)
    model = loader(
        model_spec,
        weights=weights,
        bounds=parse_bounds(bounds) or data.bounds,
        num_classes=None,
        mean=parse_stats(mean, "--mean"),
        std=parse_stats(std, "--std"),
    )
    move = getattr(model, "to", None)
    if callable(move):
        move(where)
    if where.type != "cpu":
        from dataclasses import replace

        data = replace(data, x=data.x.to(where), y=data.y.to(where))
    low, high = model.bounds
    outside = data.bounds[0] < low - 1e-6 or data.bounds[1] > high + 1e-6
    if outside and check_bounds:
        raise DataError(
            f"data {data.name} spans [{data.bounds[0]:g}, {data.bounds[1]:g}], outside the model's bounds "
            f"[{low:g}, {high:g}]; rescale the data or pass --bounds"
        )
    try:
        with torch.no_grad():
            logits = model(data.x[:1])
    except ModelContractError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
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


class _LazyProgress(Progress):
    """Draws nothing until the first task is added, so an error raised before any work starts (a bad
    argument, a missing file) is the only thing the user sees."""

    def add_task(self, *args: Any, **kwargs: Any) -> Any:
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)

    def stop(self) -> None:
        if self.live.is_started:  # Progress.stop prints a blank line even when nothing was drawn
            super().stop()


@contextmanager
def progress_bar() -> Iterator[Progress]:
    bar = _LazyProgress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    try:
        yield bar
    finally:
        bar.stop()
