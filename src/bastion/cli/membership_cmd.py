"""``bastion membership``: who was in a model's training set? Membership inference, measured."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from bastion.cli._engine_opts import AddressOpt, EngineOpt, WorkersOpt
from bastion.cli._membership_setup import concat, run_attack, warn_overlap
from bastion.cli._privacy_render import plot_roc, render_membership
from bastion.cli.app import (
    BoundsOpt,
    DeviceOpt,
    JsonOpt,
    LabelOpt,
    MeanOpt,
    ModelArg,
    StdOpt,
    WeightsOpt,
    app,
)
from bastion.cli.common import friendly_errors, load_victim_inputs, progress_bar, write_json
from bastion.errors import AttackError, DataError, ModelContractError

ATTACKS = ("threshold", "shadow", "lira", "lira-offline", "rmia", "label-only")
_ATTACK_HELP = (
    "threshold (loss threshold, Yeom et al. 2018; no reference models), shadow (Shokri et al. 2017), "
    "lira (LiRA online, Carlini et al. 2022: references trained on the targets plus --population), "
    "lira-offline (OUT references only), rmia (Zarifzadeh et al. 2024, offline; works with 1 reference), "
    "label-only (distance to the decision boundary with HopSkipJump; labels only)."
)


@app.command()
@friendly_errors
def membership(
    model: ModelArg,
    members: Annotated[
        str,
        typer.Option("--members", help="Data the model was trained on (a data spec).", show_default=False),
    ],
    non_members: Annotated[
        str,
        typer.Option(
            "--non-members", help="Data from the same distribution it was not trained on.", show_default=False
        ),
    ],
    attack: Annotated[str, typer.Option("--attack", "-a", help=_ATTACK_HELP)] = "lira",
    references: Annotated[
        int, typer.Option("--references", "-r", min=1, help="Reference models to train (shadow, lira, rmia).")
    ] = 16,
    population: Annotated[
        str | None,
        typer.Option(
            "--population",
            help="Data from the same distribution, disjoint from the targets, the references train on "
            "(needed by shadow, lira-offline, rmia; added to lira's pool).",
            show_default=False,
        ),
    ] = None,
    factory: Annotated[
        str | None,
        typer.Option(
            "--factory",
            help="Architecture of the references, FILE.py:fn or package.module:fn (default: MODEL's own).",
            show_default=False,
        ),
    ] = None,
    references_dir: Annotated[
        Path | None,
        typer.Option(
            "--references-dir",
            help="Keep the references here (safetensors + assignment.json); a rerun resumes. Default: a "
            "temporary folder.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs of each reference.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="References' batch size.")] = 128,
    lr: Annotated[
        float, typer.Option("--lr", help="References' peak learning rate (Adam, one-cycle).")
    ] = 2e-3,
    members_split: Annotated[str, typer.Option("--members-split", help="Split of --members.")] = "train",
    non_members_split: Annotated[
        str, typer.Option("--non-members-split", help="Split of --non-members.")
    ] = "test",
    population_split: Annotated[
        str, typer.Option("--population-split", help="Split of --population.")
    ] = "train",
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help="Use N members and N non-members (seeded subsets)."),
    ] = None,
    population_size: Annotated[
        int, typer.Option("--population-size", min=1, help="RMIA: population samples z compared against.")
    ] = 2500,
    gamma: Annotated[float, typer.Option("--gamma", help="RMIA: likelihood-ratio margin.")] = 2.0,
    offline_a: Annotated[
        float, typer.Option("--offline-a", help="RMIA: offline correction a in [0, 1].")
    ] = 0.3,
    max_queries: Annotated[
        int, typer.Option("--max-queries", min=10, help="label-only: HopSkipJump queries per input.")
    ] = 1000,
    roc: Annotated[
        Path | None,
        typer.Option("--roc", help="Write the ROC curve (log-log axes) to this PNG.", show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for subsets, assignment, training, attacks.")] = 0,
    weights: WeightsOpt = None,
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Measure how well an attacker tells MODEL's training members from non-members: ROC AUC, balanced
    accuracy and the true-positive rate at 0.1% and 1% false positives (the numbers that say whether
    anyone can be identified with confidence; never accuracy alone).

    Example: [bold]bastion membership zoo:digits-mlp --members digits --non-members digits --attack
    threshold[/]

    LiRA with references: [bold]bastion membership model.py:net --weights model.safetensors --members
    npz:train.npz --non-members npz:heldout.npz --population npz:extra.npz --attack lira --references 16
    --epochs 20 --references-dir refs/ --json mi.json --roc mi.png[/]

    The references train one per task with --engine ray (--workers N, --address for a cluster); the
    assignment of examples to references is drawn here, so it is the same on any engine.
    """
    from bastion.attacks.inference.references import train_references
    from bastion.cli.common import parse_bounds, parse_stats, resolve_device
    from bastion.data import load_dataset
    from bastion.defenses.training.config import TrainingConfig
    from bastion.engine import ModelRef, get_engine

    runner = get_engine(engine, address=address, workers=workers)  # a typo fails before any work
    if attack not in ATTACKS:
        raise AttackError(f"unknown membership attack {attack!r}; use one of: {', '.join(ATTACKS)}")
    needs_refs = attack in ("shadow", "lira", "lira-offline", "rmia")
    if needs_refs and attack != "lira" and population is None:
        raise DataError(
            f"--attack {attack} trains its references on data disjoint from the targets: "
            "pass --population DATA"
        )
    if needs_refs and model.startswith("oip:") and factory is None:
        raise ModelContractError(
            f"--attack {attack} trains reference models like MODEL, and a remote model's architecture is "
            "not known here: pass --factory FILE.py:fn"
        )
    clf, mem = load_victim_inputs(
        model,
        members,
        weights=weights,
        split=members_split,
        label=label,
        bounds=bounds,
        limit=limit,
        seed=seed,
        mean=mean,
        std=std,
        device=device,
    )
    non = load_dataset(non_members, split=non_members_split, label=label).take(limit, seed=seed + 1)
    targets = concat("targets", mem, non)
    is_member = torch.cat([torch.ones(len(mem), dtype=torch.bool), torch.zeros(len(non), dtype=torch.bool)])
    x, y = targets.x, targets.y
    extra: dict[str, Any] = {}
    refs = None
    with progress_bar() as bar, tempfile.TemporaryDirectory() as scratch:
        if needs_refs:
            pop = load_dataset(population, split=population_split, label=label) if population else None
            if pop is not None:
                warn_overlap(targets, pop)
            pool = (
                concat("targets+population", targets, pop) if attack == "lira" and pop else (pop or targets)
            )
            # the reference architecture, built fresh for each reference (here or on a worker: a ModelRef
            # is a factory that loads the model from its files, sha256-checked)
            build = ModelRef.create(
                factory or model, weights=None if factory else weights,
                bounds=parse_bounds(bounds) or mem.bounds, mean=parse_stats(mean, "--mean"),
                std=parse_stats(std, "--std"), device=str(resolve_device(device)),
            )  # fmt: skip
            cfg = TrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
            task = bar.add_task("references", total=references)
            folder = references_dir or Path(scratch)
            refs = train_references(
                build,
                pool,
                references,
                folder,
                seed=seed,
                config=cfg,
                progress=lambda done, total: bar.update(task, completed=done),
                engine=None if runner.name == "local" else runner,
            )
            extra = (
                {"references": refs, "ref_in": refs.assignment.keep[:, : len(targets)]}
                if attack == "lira"
                else {"references": refs}
            )
        result = run_attack(
            attack, clf, x, y, is_member, extra, seed, population_size, gamma, offline_a, max_queries
        )
    render_membership(result, model, mem.name, non.name)
    if roc is not None:
        plot_roc(result, roc)
    if json_path is not None:
        payload = {
            "model": model,
            "members": mem.name,
            "non_members": non.name,
            "seed": seed,
            **result.to_dict(),
        }
        write_json(json_path, payload)
