"""``bastion poison``: write a poisoned copy of a dataset (.npz) and the truth of what it touched."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
from rich.table import Table

from bastion.cli.app import DataArg, DeviceOpt, LabelOpt, MeanOpt, StdOpt, WeightsOpt, app
from bastion.cli.common import EPSILON_HELP_SUFFIX, friendly_errors, load_inputs, out, parse_epsilon
from bastion.errors import AttackError

if TYPE_CHECKING:
    from bastion.attacks.poisoning import PoisonResult
    from bastion.data import Dataset

_ATTACK_HELP = (
    "label-flip (random, or --source S --target T), badnets (patch trigger, Gu et al. 2017), "
    "blend (blended noise trigger, Chen et al. 2017), clean-label (PGD-perturbed target-class samples "
    "with the trigger, labels untouched, Turner et al. 2019; needs --model)."
)


def _position(text: str | None) -> str | tuple[int, int] | None:
    if text is None or "," not in text:
        return text
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError:
        raise AttackError(f"--position takes a corner name or ROW,COL (e.g. 0,5), got {text!r}") from None
    return (row, col)


@app.command()
@friendly_errors
def poison(
    data: DataArg,
    out_path: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to write the poisoned data (FILE.npz).", show_default=False),
    ],
    attack: Annotated[str, typer.Option("--attack", "-a", help=_ATTACK_HELP)] = "badnets",
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            help="Share poisoned: of all samples (badnets, blend), of the pool (label-flip: all samples, "
            "or the --source class), of the --target class (clean-label).",
        ),
    ] = 0.1,
    target: Annotated[
        int | None, typer.Option("--target", "-t", help="Target class index (backdoors; label-flip).")
    ] = None,
    source: Annotated[int | None, typer.Option("--source", help="label-flip: only flip this class.")] = None,
    size: Annotated[
        int | None,
        typer.Option("--size", help="Patch side in pixels (default: max(2, round(min(H, W) / 9)))."),
    ] = None,
    position: Annotated[
        str | None,
        typer.Option(
            "--position",
            help="Patch place: bottom-right, bottom-left, top-right, top-left, center or ROW,COL.",
        ),
    ] = None,
    pattern: Annotated[
        str | None, typer.Option("--pattern", help="checkerboard, white, black (patch); noise (blend).")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="blend: weight of the pattern (0.1).")
    ] = None,
    amplitude: Annotated[
        float | None, typer.Option("--amplitude", help="Patch strength in (0, 1]: 1 replaces the pixels.")
    ] = None,
    epsilon: Annotated[
        str | None,
        typer.Option(
            "--epsilon",
            "-e",
            metavar="EPS",
            help="clean-label: PGD budget in input units (16/255). " + EPSILON_HELP_SUFFIX,
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="clean-label: PGD steps (20).")] = None,
    norm: Annotated[str | None, typer.Option("--norm", help="clean-label: linf (default) or l2.")] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="Backdoors: replace samples (default) or append triggered copies."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="clean-label: the surrogate classifier PGD runs against (zoo:NAME, FILE.py:factory).",
        ),
    ] = None,
    weights: WeightsOpt = None,
    split: Annotated[str, typer.Option("--split", help="Which split to poison (train or test).")] = "train",
    label: LabelOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Poison a seeded subset of N.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the subset, the chosen samples and PGD.")] = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Poison DATA (its training split) and write it, with the truth of which samples were touched, to --out.

    Example: [bold]bastion poison digits --attack badnets --rate 0.05 --target 0 --out poisoned.npz[/]

    Clean-label: [bold]bastion poison digits -a clean-label --rate 0.5 -t 0 --model zoo:digits-cnn -o c.npz[/]

    Train on the result with any command that takes data: [bold]npz:poisoned.npz[/] (keys x, y, class_names).

    Ground truth for detectors (keys poisoned, original_y, poison, trigger_*): [bold]load_poison_truth[/].
    """
    from bastion.attacks.poisoning import make_poison
    from bastion.data import load_dataset

    if out_path.suffix != ".npz":
        raise typer.BadParameter(f"--out must end in .npz, got {out_path.name}")
    given = {
        "rate": rate,
        "target": target,
        "source": source,
        "size": size,
        "position": _position(position),
        "pattern": pattern,
        "alpha": alpha,
        "amplitude": amplitude,
        "epsilon": parse_epsilon(epsilon) if epsilon is not None else None,
        "steps": steps,
        "norm": norm,
        "mode": mode,
    }
    poisoner = make_poison(attack, **{k: v for k, v in given.items() if v is not None})
    if poisoner.needs_model and model is None:
        raise AttackError(
            f"{poisoner.name} perturbs samples against a surrogate: pass --model (e.g. zoo:digits-cnn)"
        )
    if not poisoner.needs_model and (model is not None or weights is not None or mean or std):
        raise AttackError(
            f"--model/--weights/--mean/--std are used by clean-label only, not {poisoner.name}; drop them"
        )
    clf = None
    if model is not None:
        clf, ds = load_inputs(
            model,
            data,
            weights=weights,
            split=split,
            label=label,
            bounds=None,
            limit=limit,
            seed=seed,
            mean=mean,
            std=std,
            device=device,
        )
    else:
        ds = load_dataset(data, split=split, label=label).take(limit, seed=seed)
    result = poisoner(ds, seed=seed, model=clf)
    path = result.save(out_path)
    _render(ds, result)
    out.print(f"poisoned data written to {path} (load it as npz:{path})", highlight=False)


def _render(data: Dataset, result: PoisonResult) -> None:
    from bastion.attacks.poisoning import PatchTrigger

    table = Table(title=f"{result.attack} on {data.name}", title_justify="left")
    for col in ("attack", "samples", "poisoned", "share", "target", "trigger"):
        table.add_column(col, justify="left" if col in ("attack", "trigger") else "right")
    trigger: dict[str, Any] = result.trigger.params() if result.trigger is not None else {}
    if isinstance(result.trigger, PatchTrigger):  # show the size the default resolved to
        trigger["size"] = result.trigger.region(tuple(data.x.shape[1:]))[2]
    table.add_row(
        result.attack,
        str(len(result.dataset)),
        str(result.n_poisoned),
        f"{result.rate:.2%}",
        "-" if result.target is None else str(result.target),
        ", ".join(f"{k}={v}" for k, v in trigger.items()) or "-",
    )
    out.print(table)
    k = data.num_classes
    before = torch.bincount(data.y.cpu(), minlength=k)
    after = torch.bincount(result.dataset.y.cpu(), minlength=k)
    touched = torch.bincount(result.original_labels[result.poisoned].cpu(), minlength=k)
    counts = Table(title="samples per class", title_justify="left")
    for col in ("class", "before", "after", "change", "poisoned (by original label)"):
        counts.add_column(col, justify="left" if col == "class" else "right")
    for c in range(k):
        change = int(after[c] - before[c])
        counts.add_row(
            data.class_names[c], str(int(before[c])), str(int(after[c])), f"{change:+d}", str(int(touched[c]))
        )
    out.print(counts)
