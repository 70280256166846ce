"""``bastion scan-data``: look for poisoned or mislabeled samples in a model's training data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import torch
import typer
from rich.table import Table

from bastion.cli.app import (
    BoundsOpt,
    DataArg,
    DeviceOpt,
    JsonOpt,
    LabelOpt,
    LimitOpt,
    MeanOpt,
    ModelArg,
    SeedOpt,
    SplitOpt,
    StdOpt,
    WeightsOpt,
    app,
)
from bastion.cli.common import err, friendly_errors, load_inputs, out, progress_bar, write_json, write_npz
from bastion.errors import DataError

if TYPE_CHECKING:
    from bastion.data import Dataset
    from bastion.detect.data_scan import DataScanner, DataScanResult

METHODS = ("ac", "spectral", "label-noise")

_METHOD_HELP = (
    "ac: activation clustering (Chen et al. 2018): per class, two clusters of the layer's activations, "
    "suspicious when they lie far apart. spectral: spectral signatures (Tran et al. 2018): the same test "
    "along the top singular direction only (more conservative). label-noise: confident learning "
    "(Northcutt et al.): --folds models trained from scratch on the other folds flag samples whose "
    "label they confidently reject (slow: trains the architecture --folds times)."
)


def _scanner(
    method: str,
    layer: str,
    min_separation: float | None,
    folds: int,
    epochs: int,
    tolerance: float,
    seed: int,
) -> DataScanner:
    from bastion.detect.activation_clustering import ActivationClustering
    from bastion.detect.label_noise import LabelNoise
    from bastion.detect.spectral import SpectralSignatures

    if method == "label-noise":
        return LabelNoise(folds=folds, epochs=epochs, tolerance=tolerance, seed=seed)
    cls = ActivationClustering if method == "ac" else SpectralSignatures
    return cls(layer=layer, min_separation=min_separation, seed=seed)


def _truth(data_spec: str, n: int, index: torch.Tensor | None) -> torch.Tensor | None:
    """The ``poisoned`` (N,) bool array of an npz:FILE dataset, when it has one (the poison CLI's)."""
    kind, _, path = data_spec.partition(":")
    if kind.strip().lower() != "npz":
        return None
    with np.load(Path(path).expanduser(), allow_pickle=False) as archive:
        if "poisoned" not in archive.files:
            return None
        raw = np.asarray(archive["poisoned"])
    if raw.shape != (n,) or not (raw.dtype == np.bool_ or np.isin(raw, (0, 1)).all()):
        raise DataError(
            f"{path}: 'poisoned' must be a ({n},) bool array marking the poisoned samples, got "
            f"{raw.shape} {raw.dtype}"
        )
    truth = torch.from_numpy(raw.astype(np.bool_))
    return truth if index is None else truth[index]


@app.command("scan-data")
@friendly_errors
def scan_data(
    model: ModelArg,
    data: DataArg,
    method: Annotated[str, typer.Option("--method", "-m", help=_METHOD_HELP)] = "ac",
    layer: Annotated[
        str,
        typer.Option(
            "--layer",
            help="ac/spectral: 'penultimate' (input of the last Linear) or a sub-module name; a narrow "
            "penultimate layer can hide a backdoor that earlier features show (digits_cnn: try '5').",
        ),
    ] = "penultimate",
    min_separation: Annotated[
        float | None,
        typer.Option(
            "--min-separation",
            help="ac/spectral: how many within-cluster standard deviations apart the two groups of a class "
            "must lie for the class to count as poisoned [default: 10 for ac, 5.5 for spectral].",
            show_default=False,
        ),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="label-noise: cross-validation folds.")] = 4,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="label-noise: training epochs per fold.")
    ] = 10,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            help="label-noise: share of a class that may look mislabeled (the model's own error) "
            "before the class counts as noisy.",
        ),
    ] = 0.05,
    weights: WeightsOpt = None,
    split: SplitOpt = "train",
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
    clean_out: Annotated[
        Path | None,
        typer.Option(
            "--clean-out", help="Write the data without the flagged samples to this .npz (x, y, index)."
        ),
    ] = None,
) -> None:
    """Scan MODEL's training DATA for poisoned (ac, spectral) or mislabeled (label-noise) samples.

    Example: [bold]bastion scan-data bastion.zoo.architectures:digits_cnn npz:train.npz --weights
    model.safetensors --method ac --json scan.json --clean-out clean.npz[/]

    Prints a table per class (samples, flagged, the test statistic, suspicious or not) and a verdict.
    Samples are flagged only in suspicious classes, so clean data comes back (almost) untouched. When
    DATA is an .npz with a 'poisoned' bool array (as the poison command writes), precision and recall
    against it are shown too.

    Exit code: [bold]0[/] nothing suspected, [bold]1[/] poisoning or label noise suspected in at least
    one class (a pipeline can gate on it), [bold]2[/] usage or data errors.
    """
    if method not in METHODS:
        raise typer.BadParameter(f"unknown --method {method!r}; use one of: {', '.join(METHODS)}")
    if clean_out is not None and clean_out.suffix != ".npz":
        raise typer.BadParameter(f"--clean-out writes an .npz file; name it *.npz, not {clean_out.name}")
    scanner = _scanner(method, layer, min_separation, folds, epochs, tolerance, seed)
    clf, full = load_inputs(
        model,
        data,
        weights=weights,
        split=split,
        label=label,
        bounds=bounds,
        limit=None,
        seed=seed,
        mean=mean,
        std=std,
        device=device,
    )
    index = full.take_indices(limit, seed=seed)
    truth = _truth(data, len(full), index)
    ds = full if index is None else full.subset(index)
    if method == "label-noise":
        with progress_bar() as bar:
            task = bar.add_task("folds", total=folds)
            result = scanner.scan(clf, ds, progress=lambda done, _: bar.update(task, completed=done))
    else:
        result = scanner.scan(clf, ds)
    _render(result, model, ds, truth)
    if json_path is not None:
        write_json(json_path, _payload(result, model, ds, split, seed, truth))
    if clean_out is not None:
        _write_clean(clean_out, result, ds)
    if result.suspected:
        raise typer.Exit(1)


def _render(result: DataScanResult, model: str, ds: Dataset, truth: torch.Tensor | None) -> None:
    statistic = "noise share" if result.method == "label-noise" else "separation (SD)"
    statistic += f" (suspicious ≥ {result.threshold:g})"
    table = Table(title=f"{model} / {ds.name}: {result.method} scan, {len(ds)} samples", title_justify="left")
    for col in ("class", "samples", "flagged", statistic, "suspicious", "note"):
        table.add_column(col, justify="left" if col in ("class", "note") else "right")
    for c in result.classes:
        value = "-" if c.statistic is None else f"{c.statistic:.3g}"
        table.add_row(
            ds.class_names[c.label],
            str(c.n),
            str(c.n_flagged),
            value,
            "[bold red]yes[/]" if c.suspicious else "no",
            c.note,
        )
    out.print(table)
    out.print(f"[bold]{result.verdict}[/]", highlight=False)
    agreement = result.params.get("out_of_fold_agreement")
    if agreement is not None:
        out.print(
            f"out-of-fold models agree with {agreement:.1%} of the given labels (flipped labels and "
            "the models' own errors both lower it: weak models, e.g. too few --epochs, flag clean labels)",
            highlight=False,
        )
    if truth is not None:
        precision, recall = result.precision_recall(truth)
        out.print(
            f"against the data's 'poisoned' array ({int(truth.sum())} marked): precision {precision:.1%}, "
            f"recall {recall:.1%}, {result.false_positive_rate(truth):.2%} of clean samples flagged",
            highlight=False,
        )


def _payload(
    result: DataScanResult, model: str, ds: Dataset, split: str, seed: int, truth: torch.Tensor | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "data": ds.name, "split": split, "seed": seed}
    payload.update(result.to_dict())
    if truth is not None:
        precision, recall = result.precision_recall(truth)
        payload["truth"] = {
            "n_poisoned": int(truth.sum()),
            "precision": precision,
            "recall": recall,
            "false_positive_rate": result.false_positive_rate(truth),
        }
    return payload


def _write_clean(path: Path, result: DataScanResult, ds: Dataset) -> None:
    keep = (~result.flagged).nonzero().flatten()
    write_npz(
        path,
        {
            "x": ds.x[keep].cpu().numpy(),
            "y": ds.y[keep].cpu().numpy(),
            "index": keep.cpu().numpy(),
            "class_names": np.asarray(ds.class_names),
        },
    )
    err.print(f"{len(keep)} samples kept ({int(result.flagged.sum())} removed), written to {path}")
