"""``bastion invert``: MI-Face model inversion, a class's representative input from the model's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer

from bastion.cli._privacy_render import inversion_quality_without_ssim, render_inversion, save_inversion_grid
from bastion.cli.app import DeviceOpt, JsonOpt, LabelOpt, MeanOpt, ModelArg, SeedOpt, StdOpt, WeightsOpt, app
from bastion.cli.common import (
    friendly_errors,
    load_inputs,
    load_victim_inputs,
    out,
    progress_bar,
    resolve_device,
    write_json,
)
from bastion.errors import AttackError, DataError

if TYPE_CHECKING:
    from bastion.data import Dataset

_OUTPUT_HELP = (
    "What the model releases to the attacker: probs (full probabilities), roundD (rounded to D decimals, "
    "e.g. round2), topK, labels (label only)."
)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"--shape takes C,H,W (e.g. 1,64,64), got {text!r}") from None
    if not shape or min(shape) < 1:
        raise DataError(f"--shape takes positive sizes C,H,W, got {text!r}")
    return shape


@app.command()
@friendly_errors
def invert(
    model: ModelArg,
    classes: Annotated[
        list[int] | None, typer.Option("--class", "-k", help="Class to reconstruct (repeat for several).")
    ] = None,
    all_classes: Annotated[bool, typer.Option("--all-classes", help="Reconstruct every class.")] = False,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the reconstructions as an image grid (PNG).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="The task's data (e.g. faces:DIR, its training split): input shape, bounds, and the class "
            "means SSIM compares to.",
        ),
    ] = None,
    shape: Annotated[
        str | None, typer.Option("--shape", metavar="C,H,W", help="Input shape when no --data is given.")
    ] = None,
    output: Annotated[str, typer.Option("--output", help=_OUTPUT_HELP)] = "probs",
    queries: Annotated[
        int | None, typer.Option("--queries", min=1, help="Query budget per class (rows sent to the model).")
    ] = None,
    white_box: Annotated[
        bool,
        typer.Option(
            "--white-box", help="Use the model's own gradient (upper bound; not a black-box attack)."
        ),
    ] = False,
    evaluator: Annotated[
        str | None,
        typer.Option(
            "--evaluator", help="An independent classifier of the same task that judges the results."
        ),
    ] = None,
    evaluator_weights: Annotated[
        str | None, typer.Option("--evaluator-weights", help="Weights for a FILE.py:factory evaluator.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=0, help="alpha: maximum gradient steps.")] = 5000,
    patience: Annotated[
        int, typer.Option("--patience", min=1, help="beta: stop after this many steps without a new best.")
    ] = 100,
    threshold: Annotated[
        float, typer.Option("--threshold", help="gamma: stop when 1 - p_k falls to this.")
    ] = 0.01,
    step_size: Annotated[float, typer.Option("--step-size", help="lambda: the gradient step.")] = 0.1,
    samples: Annotated[int, typer.Option("--samples", help="NES probes per step (even).")] = 50,
    sigma: Annotated[float, typer.Option("--sigma", help="NES probe radius in input units.")] = 0.01,
    tv: Annotated[float, typer.Option("--tv", help="Weight of a total-variation prior (0: off).")] = 0.0,
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="zero (the paper), center (middle of the bounds: mid-grey) or mean (mean image of --data).",
        ),
    ] = "zero",
    normalize: Annotated[
        bool,
        typer.Option(
            "--normalize",
            help="Steps of RMS pixel change --step-size (try 0.02); far faster than the raw step.",
        ),
    ] = False,
    weights: WeightsOpt = None,
    split: Annotated[
        str, typer.Option("--split", help="Which split of --data (class means, shape).")
    ] = "train",
    label: LabelOpt = None,
    json_path: JsonOpt = None,
    seed: SeedOpt = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Reconstruct what MODEL thinks class K looks like from its outputs (MI-Face, Fredrikson et al. 2015).

    Example: [bold]bastion invert FILE.py:net --weights faces.safetensors --data faces:DIR --all-classes
    --output round2 --evaluator FILE.py:cnn --evaluator-weights eval.safetensors --out faces.png[/]

    Black-box by default: gradients are estimated from released outputs (NES) and every query is counted;
    --white-box differentiates the model instead (the upper bound of the leak).
    """
    from bastion.attacks.inference.inversion_metrics import class_means, inversion_quality
    from bastion.attacks.inference.mi_face import MIFace
    from bastion.loading import load_model, load_victim

    if white_box and output != "probs":
        raise AttackError(
            f"--white-box differentiates the model itself; --output {output} is for black-box runs: drop one"
        )
    if start not in ("zero", "center", "mean"):
        raise AttackError(f"--start takes zero, center or mean, got {start!r}")
    if data is None and shape is None:
        raise DataError("pass --data (the task's data) or --shape C,H,W so the attack knows the input shape")
    dataset: Dataset | None = None
    if data is not None:
        # black-box runs need outputs only: the model may be remote (oip:http://...)
        clf, dataset = (load_inputs if white_box else load_victim_inputs)(
            model,
            data,
            weights=weights,
            split=split,
            label=label,
            bounds=None,
            limit=None,
            seed=seed,
            mean=mean,
            std=std,
            device=device,
        )
        input_shape = tuple(dataset.x.shape[1:])
    else:
        from bastion.cli.common import parse_stats

        clf = (load_model if white_box else load_victim)(
            model, weights=weights, mean=parse_stats(mean, "--mean"), std=parse_stats(std, "--std")
        )
        move = getattr(clf, "to", None)
        if callable(move):
            move(resolve_device(device))
        input_shape = _shape(shape or "")
    where = getattr(clf, "device", None) or resolve_device(device)
    with torch.no_grad():
        num_classes = int(clf(torch.zeros(1, *input_shape, device=where).clamp(*clf.bounds)).shape[1])
    if all_classes:
        wanted = list(range(num_classes))
    elif classes:
        wanted = list(classes)
    else:
        raise AttackError("name the classes to reconstruct: --class K (repeatable) or --all-classes")
    if min(wanted) < 0 or max(wanted) >= num_classes:
        raise AttackError(f"--class must lie in [0, {num_classes}), got {wanted}")
    if start == "mean" and dataset is None:
        raise AttackError("--start mean needs --data")
    begin = dataset.x.mean(0) if start == "mean" and dataset is not None else None
    if start == "center":
        low, high = clf.bounds
        begin = torch.full(input_shape, (low + high) / 2, device=where)
    attack = MIFace(
        steps=steps,
        patience=patience,
        threshold=threshold,
        step_size=step_size,
        gradient="white-box" if white_box else "nes",
        samples=samples,
        sigma=sigma,
        tv_weight=tv,
        max_queries=queries,
        normalize=normalize,
    )
    victim: Any = clf
    if not white_box:
        from bastion.defenses.output_policy import PolicyClassifier

        victim = PolicyClassifier(clf, output)
    with progress_bar() as bar:
        task = bar.add_task("inverting", total=steps + 1)
        result = attack.run(
            victim,
            wanted,
            shape=input_shape,
            start=begin,
            seed=seed,
            device=where,
            progress=lambda i, n: bar.update(task, completed=i),
        )
        bar.update(task, completed=steps + 1)
    quality = None
    if evaluator is not None:
        judge = load_model(evaluator, weights=evaluator_weights, bounds=clf.bounds)
        judge.to(where)
        if dataset is not None:
            quality = inversion_quality(result.reconstructions, result.classes, judge, dataset)
        else:
            from bastion.attacks.inference.inversion_metrics import evaluator_accuracy

            acc, recognised = evaluator_accuracy(judge, result.reconstructions, result.classes)
            quality = inversion_quality_without_ssim(acc, recognised)
    ssim_only = None
    if quality is None and dataset is not None:
        from bastion.attacks.inference.inversion_metrics import ssim

        low, high = dataset.bounds
        means = class_means(dataset, result.classes).to(result.reconstructions.device)
        ssim_only = ssim(result.reconstructions, means, data_range=high - low).cpu()
    render_inversion(result, quality, ssim_only, output if not white_box else "white-box")
    if out_path is not None:
        save_inversion_grid(result, out_path, dataset)
        out.print(f"reconstructions written to {out_path}", highlight=False)
    if json_path is not None:
        payload: dict[str, Any] = {"model": model, "output": output, **result.to_dict()}
        if quality is not None:
            payload["quality"] = quality.to_dict()
        if ssim_only is not None:
            payload["ssim"] = ssim_only.tolist()
        write_json(json_path, payload)
