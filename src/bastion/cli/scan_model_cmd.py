"""``bastion scan-model``: look for a backdoor in a trained model (Neural Cleanse)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bastion.cli.app import (
    BoundsOpt,
    DataArg,
    DeviceOpt,
    JsonOpt,
    LabelOpt,
    MeanOpt,
    ModelArg,
    SplitOpt,
    StdOpt,
    WeightsOpt,
    app,
)
from bastion.cli.common import err, friendly_errors, load_inputs, out, progress_bar, write_json

METHODS = ("neural-cleanse",)


@app.command("scan-model")
@friendly_errors
def scan_model(
    model: ModelArg,
    data: DataArg,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="neural-cleanse: reverse-engineer the smallest trigger for every class and flag a class "
            "whose trigger is an outlier by the MAD test (Wang et al. 2019).",
        ),
    ] = "neural-cleanse",
    steps: Annotated[
        int, typer.Option("--steps", min=1, help="Optimisation steps (all classes at once; stops early).")
    ] = 300,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Clean inputs per step and class.")
    ] = 16,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Anomaly index above which a class is flagged.")
    ] = 2.0,
    weights: WeightsOpt = None,
    split: SplitOpt = "test",
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Clean inputs to scan with (a seeded random subset).")
    ] = 500,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for the subset, the triggers' start and the mini-batches.")
    ] = 0,
    image: Annotated[
        Path | None,
        typer.Option("--image", help="Write the reversed triggers (mask x pattern per class) as a PNG."),
    ] = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
) -> None:
    """Scan MODEL for a backdoor, using clean inputs from DATA.

    Example: [bold]bastion scan-model bastion.zoo.architectures:digits_cnn digits --weights
    suspect.safetensors --image triggers.png[/]

    For every class, Neural Cleanse searches the smallest mask and pattern that send the clean inputs
    to that class. A backdoored class needs a far smaller trigger than the others; a class whose
    trigger is smaller than the median with an anomaly index above --threshold is flagged.

    Exit code: 1 when a class is flagged (a CI pipeline can refuse a model that looks backdoored),
    0 when no class stands out, 2 on a usage error. A clean scan is evidence, not proof: triggers
    larger than a patch (blends, warps) and several targets at once can escape the outlier test.
    """
    from bastion.detect.model_scan import save_trigger_images
    from bastion.detect.neural_cleanse import NeuralCleanse

    if method not in METHODS:
        raise typer.BadParameter(f"unknown --method {method!r}; use one of: {', '.join(METHODS)}")
    scanner = NeuralCleanse(steps=steps, batch_size=batch_size, anomaly_threshold=threshold, seed=seed)
    clf, ds = load_inputs(
        model,
        data,
        weights=weights,
        split=split,
        label=label,
        bounds=bounds,
        limit=limit,
        seed=seed,
        mean=mean,
        std=std,
        device=device,
    )
    with progress_bar() as bar:
        task = bar.add_task("triggers", total=steps)
        result = scanner.scan(clf, ds.x, progress=lambda done, _: bar.update(task, completed=done))
        bar.update(task, completed=steps)  # early stopping ends before the last step
    names = ds.class_names
    table = Table(
        title=f"{model} on {ds.name}: {method}, {len(ds)} clean inputs, {result.seconds:.1f} s",
        title_justify="left",
    )
    for col in ("class", "mask L1", "attack success", "anomaly index", "flagged"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for k in range(result.num_classes):
        flagged = k in result.flagged
        table.add_row(
            names[k],
            f"{float(result.mask_l1[k]):.2f}",
            f"{float(result.attack_success[k]):.1%}",
            f"{float(result.anomaly_index[k]):.2f}",
            "[bold red]yes[/]" if flagged else "",
        )
    out.print(table)
    out.print(_verdict(result, names), highlight=False)
    if json_path is not None:
        payload: dict[str, Any] = {"model": model, "data": ds.name, "n_samples": len(ds), **result.to_dict()}
        write_json(json_path, payload)
    if image is not None:
        save_trigger_images(result, image, class_names=names)
        err.print(f"triggers written to {image}")
    if result.suspected:
        raise typer.Exit(1)


def _verdict(result: Any, names: tuple[str, ...]) -> str:
    if result.suspected:
        which = ", ".join(
            f"class {names[k]} (anomaly index {float(result.anomaly_index[k]):.1f})" for k in result.flagged
        )
        return f"[bold red]backdoor suspected:[/] {which}"
    k = int(result.mask_l1.argmin())
    return (
        f"[bold green]no class stands out[/]: the smallest trigger (class {names[k]}, mask L1 "
        f"{float(result.mask_l1[k]):.1f}) has anomaly index {float(result.anomaly_index[k]):.1f} "
        f"<= {result.threshold:g}"
    )
