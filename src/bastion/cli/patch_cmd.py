"""``bastion patch``: fit a universal adversarial patch with EOT and judge it on held-out inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bastion.cli._fit_and_judge import check_png, load_fit_and_test, write_png
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
    StdOpt,
    WeightsOpt,
    app,
)
from bastion.cli.common import friendly_errors, out, progress_bar, write_json
from bastion.errors import AttackError


@app.command()
@friendly_errors
def patch(
    model: ModelArg,
    data: DataArg,
    area: Annotated[
        float, typer.Option("--area", help="Share of the image the patch covers, in (0, 0.5].")
    ] = 0.1,
    target: Annotated[
        int | None,
        typer.Option(
            "--target",
            help="Targeted: the class the patch should make the model answer (default: "
            "untargeted, any wrong answer).",
        ),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Signed-gradient steps on the patch.")] = 500,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per step.")] = 32,
    step_size: Annotated[
        float, typer.Option("--step-size", help="Step, as a share of the bounds' width.")
    ] = 0.01,
    eot_samples: Annotated[
        int, typer.Option("--eot-samples", min=1, help="Placements per image per step.")
    ] = 1,
    shape: Annotated[str, typer.Option("--shape", help="square or circle.")] = "square",
    locations: Annotated[str, typer.Option("--locations", help="anywhere, corners or center.")] = "anywhere",
    rotation: Annotated[float, typer.Option("--rotation", help="Largest rotation in degrees (EOT).")] = 20.0,
    fit: Annotated[
        int,
        typer.Option("--fit", min=1, help="Training-split images the patch is fitted on (seeded subset)."),
    ] = 500,
    draws: Annotated[
        int, typer.Option("--draws", min=1, help="Placements per held-out image when judging.")
    ] = 4,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the patch as a PNG (enlarged, ready to print).")
    ] = None,
    weights: WeightsOpt = None,
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    limit: LimitOpt = 500,
    seed: SeedOpt = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
) -> None:
    """Fit one patch that works on every image (Brown et al. 2017: expectation over random scale, rotation,
    brightness and position) on DATA's training split, then judge it on held-out test images.

    [bold]bastion patch zoo:cifar10-cnn cifar10:../shared/data/cifar10 --area 0.1 --target 0 --out p.png[/]

    Success is measured on test images the patch never saw, at fresh placements from the training
    distribution and at [italic]unseen[/] ones outside it (larger/smaller, more rotated, other brightness; the
    centre for corner training and vice versa), each beside a random patch at the same placements: the
    gap is what the pattern adds to mere occlusion. Targeted success counts images neither labelled nor
    clean-classified as the target; untargeted, correctly classified images that the patch breaks.
    Defenses: [bold]bastion harden --method patch[/] (empirical), [bold]bastion certify --method
    derandomized[/] (certified).
    """
    from bastion.attacks.physical import AdversarialPatch, PatchThreat

    check_png(out_path)
    clf, train, test = load_fit_and_test(
        model, data, fit=fit, label=label, limit=limit, seed=seed, weights=weights, bounds=bounds, mean=mean,
        std=std, device=device,
    )  # fmt: skip
    threat = PatchThreat(area=area, shape=shape, locations=locations, rotation=rotation,  # type: ignore[arg-type]
                         bounds=clf.bounds)  # fmt: skip
    threat.check_fits((int(test.x.shape[2]), int(test.x.shape[3])))
    if target is not None and not 0 <= target < test.num_classes:
        raise AttackError(f"--target must be a class index in [0, {test.num_classes}), got {target}")
    x_fit = train.x.to(test.x.device)
    attack = AdversarialPatch(
        steps=steps, batch_size=batch_size, step_size=step_size, eot_samples=eot_samples
    )
    with progress_bar() as bar:
        task = bar.add_task(f"patch ({area:.0%} of the image)", total=3)
        fitted = attack.fit(
            clf,
            x_fit,
            threat,
            target=target,
            y=None if target is not None else train.y.to(x_fit.device),
            seed=seed,
        )
        bar.update(task, advance=1)
        seen = fitted.evaluate(clf, test.x, test.y, placements="train", draws=draws, seed=seed + 2)
        bar.update(task, advance=1)
        unseen = fitted.evaluate(clf, test.x, test.y, placements="unseen", draws=draws, seed=seed + 3)
        bar.update(task, advance=1)
    side = tuple(int(v) for v in fitted.patch.shape[1:])
    kind = f"targeted at class {target}" if target is not None else "untargeted"
    table = Table(title=f"{model}: a {side[0]}x{side[1]} patch ({area:.0%} of the image), {kind}",
                  title_justify="left")  # fmt: skip
    for col in ("placements", "patch success", "random patch", "held-out images"):
        table.add_column(col, justify="right" if col != "placements" else "left")
    for name, score in (("training distribution", seen), ("unseen", unseen)):
        table.add_row(
            name, f"{score.success_rate:.1%}", f"{score.baseline_rate:.1%}", f"{score.counted} x {draws}"
        )
    out.print(table)
    out.print(f"fitted on {len(train)} training images in {fitted.seconds:.1f} s ({steps} steps)")
    payload: dict[str, Any] = {
        "model": model, "data": test.name, "threat": {"area": area, "shape": shape, "locations": locations,
        "rotation": rotation, "scale": list(threat.scale), "brightness": list(threat.brightness)},
        "target": target, "patch_shape": list(fitted.patch.shape), "attack": attack.params(), "seed": seed,
        "fit_images": len(train), "seconds": round(fitted.seconds, 3),
        "train_placements": {"success": seen.success_rate, "random_patch": seen.baseline_rate,
                             "images": seen.counted, "draws": draws},
        "unseen_placements": {"success": unseen.success_rate, "random_patch": unseen.baseline_rate,
                              "images": unseen.counted, "draws": draws},
    }  # fmt: skip
    if out_path is not None:
        write_png(out_path, fitted.patch, clf.bounds, "patch")
        payload["png"] = str(out_path)
    if json_path is not None:
        write_json(json_path, json.loads(json.dumps(payload)))
