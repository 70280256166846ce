"""``bastion spatial``: accuracy under the worst rotation and translation (Engstrom et al. 2019)."""

from __future__ import annotations

from typing import Annotated, Any

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
from bastion.cli.common import friendly_errors, load_inputs, out, progress_bar, write_json
from bastion.errors import AttackError, DataError

METHODS = ("worst-of-k", "grid", "first-order")


@app.command()
@friendly_errors
def spatial(
    model: ModelArg,
    data: DataArg,
    rotation: Annotated[
        float, typer.Option("--rotation", help="Largest rotation either way, degrees.")
    ] = 30.0,
    translation: Annotated[
        float, typer.Option("--translation", help="Largest shift per axis, as a fraction of the side.")
    ] = 0.1,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="worst-of-k: the worst of --k random transforms per image (the paper's cheap, strong "
            "default); grid: every point of a 31 x 5 x 5 grid (exhaustive at that resolution); first-order: "
            "projected gradient steps on the angle and the shifts (needs gradients).",
        ),
    ] = "worst-of-k",
    k: Annotated[int, typer.Option("--k", min=1, help="worst-of-k: transforms tried per image.")] = 10,
    split: SplitOpt = "test",
    weights: WeightsOpt = None,
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
) -> None:
    """Accuracy of MODEL on DATA when an attacker may rotate and shift each image (Engstrom et al., "Exploring
    the Landscape of Spatial Robustness", 2019): no pixel budget, only a small change of viewpoint.

    [bold]bastion spatial zoo:cifar10-cnn cifar10:../shared/data/cifar10 --rotation 30 --translation 0.1[/]

    Each result is re-rendered and re-checked on the model; spatial accuracy counts the inputs classified
    correctly both clean and under the worst transform found. Pixels shifted in from outside are the lower
    bound (black). Augmenting training with the same transforms (or worst-of-10 training) is the defense.
    """
    from bastion.attacks.physical import GridSearch, SpatialFirstOrder, SpatialThreat, WorstOfK

    if method not in METHODS:
        raise AttackError(f"unknown --method {method!r}; use one of: {', '.join(METHODS)}")
    clf, ds = load_inputs(
        model, data, weights=weights, split=split, label=label, bounds=bounds, limit=limit, seed=seed,
        mean=mean, std=std, device=device,
    )  # fmt: skip
    if ds.x.dim() != 4:
        raise DataError(f"spatial attacks move images (N, C, H, W); {ds.name} holds {tuple(ds.x.shape[1:])}")
    threat = SpatialThreat(max_rotation=rotation, max_translation=translation, bounds=clf.bounds)
    attack: Any
    if method == "worst-of-k":
        attack = WorstOfK(k)
    elif method == "grid":
        attack = GridSearch()
    else:
        attack = SpatialFirstOrder()
    with progress_bar() as bar:
        task = bar.add_task(f"spatial ({method})", total=1)
        res = attack(clf, ds.x, ds.y, threat, seed=seed)
        bar.update(task, advance=1)
    n = len(ds)
    clean = float(res.correct.float().mean())
    robust = float((res.correct & ~res.success).float().mean())
    table = Table(
        title=f"{model} on {ds.name}: rotations ±{rotation:g}°, shifts ±{translation:g}", title_justify="left"
    )
    for col in ("", "accuracy"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(f"clean ({n} images)", f"{clean:.1%}")
    table.add_row(f"worst transform ({attack.name})", f"{robust:.1%}")
    out.print(table)
    out.print(f"{int(res.success.sum())} of {int(res.correct.sum())} correct images broken; "
              f"{res.queries} queries; {res.seconds:.1f} s")  # fmt: skip
    if json_path is not None:
        write_json(json_path, {"model": model, "data": ds.name, "method": method, "n_samples": n,
                               "threat": {"max_rotation": rotation, "max_translation": translation},
                               "clean_accuracy": clean, "spatial_accuracy": robust, "seed": seed,
                               **{"result": res.to_dict()}})  # fmt: skip
