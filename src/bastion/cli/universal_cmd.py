"""``bastion universal``: one input-agnostic perturbation, fitted on training images and judged on held-out
ones beside random noise of the same norm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    NormOpt,
    SeedOpt,
    StdOpt,
    WeightsOpt,
    app,
)
from bastion.cli.common import (
    EPSILON_HELP_SUFFIX,
    friendly_errors,
    out,
    parse_epsilon,
    progress_bar,
    write_json,
)
from bastion.errors import AttackError

METHODS = ("gradient", "deepfool")


@app.command()
@friendly_errors
def universal(
    model: ModelArg,
    data: DataArg,
    epsilon: Annotated[
        str,
        typer.Option(
            "--epsilon",
            "-e",
            metavar="EPS",
            help="Budget of the one perturbation, e.g. 8/255. " + EPSILON_HELP_SUFFIX,
        ),
    ],
    norm: NormOpt = "linf",
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="gradient: projected stochastic ascent on the loss of the fitting "
            "images (fast, strong); deepfool: Moosavi-Dezfooli et al.'s Algorithm 1 (one DeepFool "
            "step per image not yet fooled; slower).",
        ),
    ] = "gradient",
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="gradient: passes over the fitting images.")
    ] = 10,
    passes: Annotated[
        int, typer.Option("--passes", min=1, help="deepfool: passes over the fitting images.")
    ] = 5,
    fit: Annotated[
        int, typer.Option("--fit", min=1, help="Training-split images it is fitted on (seeded subset).")
    ] = 500,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the perturbation as a PNG (scaled to be seen).")
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
    """Fit one perturbation that changes the model's answer on most inputs (Moosavi-Dezfooli et al. 2017)
    on DATA's training split, and judge it on held-out test images.

    [bold]bastion universal zoo:cifar10-cnn cifar10:../shared/data/cifar10 --epsilon 8/255[/]

    The fooling rate is the share of held-out images whose label the perturbation changes; beside it,
    random noise of exactly the same norm (random signs for linf, a random direction for l2): a gap far
    above the noise means the model has a direction an attacker can broadcast to every input without
    seeing it. Adversarial training at epsilon ([bold]bastion harden[/]) is the defense.
    """
    from bastion.attacks.physical import UniversalDeepFool, UniversalGradient, evaluate_universal
    from bastion.threat import ThreatModel

    if method not in METHODS:
        raise AttackError(f"unknown --method {method!r}; use one of: {', '.join(METHODS)}")
    check_png(out_path)
    eps = parse_epsilon(epsilon)
    clf, train, test = load_fit_and_test(
        model, data, fit=fit, label=label, limit=limit, seed=seed, weights=weights, bounds=bounds, mean=mean,
        std=std, device=device,
    )  # fmt: skip
    threat = ThreatModel(norm, eps, bounds=clf.bounds)
    attack = UniversalGradient(epochs=epochs) if method == "gradient" else UniversalDeepFool(passes=passes)
    with progress_bar() as bar:
        task = bar.add_task(f"universal ({method}, {norm} {eps:g})", total=1)
        res = evaluate_universal(
            clf, attack, train.x.to(test.x.device), test.x, threat, y_test=test.y, seed=seed
        )
        bar.update(task, advance=1)
    table = Table(
        title=f"{model}: one {norm} perturbation of {res.norm:.4g} (budget {eps:g})", title_justify="left"
    )
    for col in ("", "fooling rate"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(f"fitting images ({len(train)})", f"{res.fit_fooling_rate:.1%}")
    table.add_row(f"held-out images ({len(test)})", f"{res.test_fooling_rate:.1%}")
    table.add_row("random noise, same norm, held-out", f"{res.noise_fooling_rate:.1%}")
    out.print(table)
    if res.clean_accuracy is not None and res.perturbed_accuracy is not None:
        out.print(f"held-out accuracy {res.clean_accuracy:.1%} clean, {res.perturbed_accuracy:.1%} "
                  f"perturbed; {res.seconds:.1f} s")  # fmt: skip
    payload = {"model": model, "data": test.name, "method": method, "fit_images": len(train), **res.to_dict()}
    if out_path is not None:
        v = res.perturbation.detach().cpu()
        scale = float(v.abs().max()) or 1.0
        # mid-grey is zero; the largest change is black or white
        write_png(out_path, v / (2 * scale) + 0.5, (0.0, 1.0), "perturbation")
        payload["png"] = str(out_path)
    if json_path is not None:
        write_json(json_path, payload)
