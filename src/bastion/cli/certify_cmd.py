"""``bastion certify``: provable robustness by randomized smoothing (l2) or interval bounds (linf)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.table import Table

from bastion.cli._engine_opts import AddressOpt, EngineOpt, ResumeOpt, ThreadsOpt, WorkersOpt, shard_model
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
from bastion.cli.common import (
    EPSILON_HELP_SUFFIX,
    err,
    friendly_errors,
    load_inputs,
    out,
    parse_epsilon,
    progress_bar,
    write_json,
)

METHODS = ("smoothing", "ibp", "derandomized")


def _radii(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        values = tuple(sorted({float(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise typer.BadParameter(
            f"--radii takes comma-separated numbers, e.g. 0,0.25,0.5; got {text!r}"
        ) from None
    if not values or min(values) < 0:
        raise typer.BadParameter(f"--radii must be non-negative numbers, got {text!r}")
    return values


@app.command()
@friendly_errors
def certify(
    model: ModelArg,
    data: DataArg,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            help="smoothing: randomized smoothing (Cohen et al. 2019), an l2 certificate for any model, "
            "holding with probability 1 - alpha; ibp: interval bound propagation (Gowal et al. 2018), "
            "a deterministic linf certificate for feed-forward PyTorch networks; derandomized: "
            "derandomized smoothing (Levine & Feizi 2020), a deterministic certificate against patches, "
            "for a model built as bastion.certify.derandomized.SoftVote (radii are patch sides in pixels).",
        ),
    ] = "smoothing",
    sigma: Annotated[
        float | None,
        typer.Option("--sigma", help="smoothing: Gaussian noise level, as the model was trained with."),
    ] = None,
    n: Annotated[
        int, typer.Option("--n", min=1, help="smoothing: noise draws that bound the top class's probability.")
    ] = 100_000,
    n0: Annotated[int, typer.Option("--n0", min=1, help="smoothing: draws that pick the class.")] = 100,
    alpha: Annotated[
        float, typer.Option("--alpha", help="smoothing: failure probability of each certificate.")
    ] = 0.001,
    norm: Annotated[str, typer.Option("--norm", help="ibp: the norm (linf only).")] = "linf",
    epsilon: Annotated[
        str | None,
        typer.Option(
            "--epsilon",
            "-e",
            metavar="EPS",
            help="ibp: the linf radius to certify, e.g. 0.1 or 2/255. " + EPSILON_HELP_SUFFIX,
        ),
    ] = None,
    radii: Annotated[
        str | None,
        typer.Option(
            "--radii",
            help="Radii to report certified accuracy at, comma-separated. "
            "Default: 0,0.25,0.5,0.75,1 (smoothing), 0,EPSILON (ibp), 0,1,2,3,4,5 patch sides "
            "(derandomized).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Noisy inputs (smoothing) or inputs (ibp) per pass.")
    ] = 1000,
    weights: WeightsOpt = None,
    split: SplitOpt = "test",
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the certified-accuracy curve as a PNG.")
    ] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    resume: ResumeOpt = None,
    shard_size: Annotated[
        int,
        typer.Option("--shard-size", min=1, help="Inputs per shard (part of a run's identity for --resume)."),
    ] = 20,
) -> None:
    """Certify MODEL on DATA: per input, a radius within which no attack can change the prediction.

    Smoothing: [bold]bastion certify zoo:mnist-strided-noise-0.25 mnist:../shared/data/mnist --sigma 0.25
    --limit 100[/]

    IBP: [bold]bastion certify zoo:mnist-strided-ibp mnist:../shared/data/mnist --method ibp --epsilon 0.1[/]

    Patches: [bold]bastion certify net.py:build digits --weights net.safetensors --method derandomized[/]
    (net.py builds a SoftVote; see docs/certify.md)

    Certified accuracy at radius r counts inputs that are classified correctly, not abstained on, and
    certified at r or more. Smoothing abstains where the noisy votes are too close to call; abstentions
    count as errors. Smoothing costs N + N0 forward passes per input (about 100,000 by default): start
    with --limit, spread it with --engine ray --workers N, and keep it resumable with --resume DIR (inputs
    run in shards of --shard-size, each seeded from its inputs: the same certificates on any engine).
    """
    from bastion.engine import get_engine

    runner = get_engine(engine, address=address, workers=workers, threads=threads)  # typos fail first
    from bastion.results import STANDARD_RADII

    if method not in METHODS:
        raise typer.BadParameter(f"unknown --method {method!r}; use one of: {', '.join(METHODS)}")
    if method == "smoothing" and sigma is None:
        raise typer.BadParameter("--method smoothing needs --sigma (the noise the model was trained with)")
    if method == "ibp" and epsilon is None:
        raise typer.BadParameter("--method ibp needs --epsilon (the linf radius to certify)")
    if method == "derandomized" and (mean is not None or std is not None):
        raise typer.BadParameter(
            "--method derandomized encodes raw inputs itself (SoftVote); drop --mean/--std and give the data "
            "in the model's bounds"
        )
    eps = parse_epsilon(epsilon) if epsilon is not None else 0.0
    defaults = {
        "smoothing": STANDARD_RADII,
        "ibp": (0.0, eps),
        "derandomized": (0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
    }
    report_radii = _radii(radii, defaults[method])
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
    from bastion.certify import DerandomizedSmoothing, IntervalBoundPropagation, RandomizedSmoothing
    from bastion.engine import certify_sharded
    from bastion.threat import ThreatModel

    certifier: Any
    threat = None
    if method == "derandomized":
        soft = _softvote(clf, model)
        certifier = DerandomizedSmoothing(soft.ablation.kind, soft.ablation.size, batch_size=batch_size)
        bands = soft.ablation.positions(*ds.x.shape[2:])
    elif method == "smoothing":
        certifier = RandomizedSmoothing(
            float(sigma or 0), n_select=n0, n_estimate=n, alpha=alpha, batch_size=batch_size
        )
    else:
        threat = ThreatModel(norm, eps, bounds=clf.bounds)
        certifier = IntervalBoundPropagation(batch_size=batch_size)
        certifier.certify(clf, ds.x[:1], threat)  # a network IBP cannot bound fails here, before any bar
    target = shard_model(runner, clf, model, weights=weights, mean=mean, std=std, device=device)
    with progress_bar() as bar:
        task = bar.add_task(f"{method} ({runner.name})", total=len(ds))
        result = certify_sharded(
            certifier, target, ds.x, threat, seed=seed, shard_size=shard_size, engine=runner, run_dir=resume,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    if method == "derandomized":
        _report(
            model, ds, result, report_radii, seed, json_path, plot,
            title=f"{model} on {ds.name}: derandomized smoothing (patch side, pixels), {len(ds)} inputs",
            column="patch side",
            summary=lambda median: f"deterministic: every one of the {bands} bands voted; median certified "
            f"patch side of correct inputs {median:g} px; {result.seconds:.1f} s",
        )  # fmt: skip
        return
    abstained = int(result.abstained.sum())
    _report(
        model, ds, result, report_radii, seed, json_path, plot,
        title=f"{model} on {ds.name}: {method} ({result.norm}), {len(ds)} inputs", column="radius",
        summary=lambda median: f"{abstained} abstention(s) ({abstained / len(ds):.1%}), counted as errors; "
        f"median certified radius of correct inputs {median:.3f}; {result.seconds:.1f} s",
    )  # fmt: skip


def _report(
    spec: str, ds: Any, result: Any, report_radii: tuple[float, ...], seed: int, json_path: Path | None,
    plot: Path | None, *, title: str, column: str, summary: Callable[[float], str],
) -> None:  # fmt: skip
    """Certified accuracy at ``report_radii`` as a table and a summary line (given the median certified
    radius of correct inputs), then the JSON and the curve when asked for."""
    curve = result.curve(ds.y, report_radii)
    payload = _payload(spec, ds.name, result, ds.y, curve, seed)
    table = Table(title=title, title_justify="left")
    table.add_column(column, justify="right")
    table.add_column("certified accuracy", justify="right")
    for r, acc in curve:
        table.add_row(f"{r:g}", f"{acc:.2%}")
    out.print(table)
    out.print(summary(payload["median_radius"]), highlight=False)
    if json_path is not None:
        write_json(json_path, payload)
    if plot is not None:
        from bastion.certify.plot import plot_curve

        plot_curve({spec: curve}, plot, norm=result.norm)
        err.print(f"curve written to {plot}")


def _payload(
    model: str, data: str, result: Any, y: torch.Tensor, curve: list[tuple[float, float]], seed: int
) -> dict[str, Any]:
    correct = (~result.abstained) & (result.prediction == y)
    radii = result.radius[correct]
    return {
        "model": model,
        "data": data,
        "method": result.method,
        "norm": result.norm,
        "params": result.params,
        "seed": seed,
        "n_samples": len(result),
        "abstained": int(result.abstained.sum()),
        "median_radius": float(radii.median()) if radii.numel() else 0.0,
        "seconds": round(result.seconds, 3),
        "certified_accuracy": [{"radius": r, "accuracy": acc} for r, acc in curve],
        "samples": [
            {"index": i, "label": int(lab), "prediction": int(p), "radius": float(r), "abstained": bool(a)}
            for i, (lab, p, r, a) in enumerate(
                zip(
                    y.tolist(),
                    result.prediction.tolist(),
                    result.radius.tolist(),
                    result.abstained.tolist(),
                    strict=True,
                )
            )
        ],
    }


def _softvote(clf: Any, spec: str) -> Any:
    """The SoftVote model ``clf`` wraps (derandomized smoothing certifies its base network's votes)."""
    from bastion.certify.derandomized import softvote_of
    from bastion.errors import CertificationError

    soft = softvote_of(clf)
    if soft is None:
        raise CertificationError(
            f"--method derandomized needs the smoothed model itself: build {spec} as "
            "bastion.certify.derandomized.SoftVote(base, Ablation('column', 4), bounds) (the base network "
            "takes the 2C-channel encoded bands; see docs/certify.md), got "
            f"{type(getattr(clf, 'module', clf)).__name__}"
        )
    return soft
