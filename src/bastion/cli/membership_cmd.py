"""``bastion membership``: who was in a model's training set? Membership inference, measured."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
from rich.table import Table

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
from bastion.cli.common import err, friendly_errors, load_victim_inputs, out, progress_bar, write_json
from bastion.errors import AttackError, DataError, ModelContractError

if TYPE_CHECKING:
    from bastion.attacks.inference.metrics import MembershipResult
    from bastion.attacks.inference.references import Factory
    from bastion.data import Dataset
    from bastion.model import Classifier, TorchClassifier

ATTACKS = ("threshold", "shadow", "lira", "lira-offline", "rmia", "label-only")
_ATTACK_HELP = (
    "threshold (loss threshold, Yeom et al. 2018; no reference models), shadow (Shokri et al. 2017), "
    "lira (LiRA online, Carlini et al. 2022: references trained on the targets plus --population), "
    "lira-offline (OUT references only), rmia (Zarifzadeh et al. 2024, offline; works with 1 reference), "
    "label-only (distance to the decision boundary with HopSkipJump; labels only)."
)


def _factory(
    spec: str, weights: str | None, bounds: Any, mean: Any, std: Any, device: torch.device
) -> Factory:
    """Builds the reference architecture from a model spec (re-initialised by the training)."""
    from bastion.cli.common import parse_stats
    from bastion.loading import load_model

    def build() -> TorchClassifier:
        clf = load_model(
            spec,
            weights=weights,
            bounds=bounds,
            mean=parse_stats(mean, "--mean"),
            std=parse_stats(std, "--std"),
        )
        return clf.to(device)

    return build


def _concat(name: str, *parts: Dataset) -> Dataset:
    from bastion.data import Dataset

    first = parts[0]
    for p in parts[1:]:
        if p.input_shape != first.input_shape or p.num_classes != first.num_classes:
            raise DataError(
                f"{p.name} ({p.input_shape}, {p.num_classes} classes) does not match {first.name} "
                f"({first.input_shape}, {first.num_classes} classes)"
            )
    x = torch.cat([p.x.to(first.x.device) for p in parts])
    y = torch.cat([p.y.to(first.x.device) for p in parts])
    return Dataset(x, y, first.num_classes, first.bounds, first.class_names, name)


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
) -> None:
    """Measure how well an attacker tells MODEL's training members from non-members: ROC AUC, balanced
    accuracy and the true-positive rate at 0.1% and 1% false positives (the numbers that say whether
    anyone can be identified with confidence; never accuracy alone).

    Example: [bold]bastion membership zoo:digits-mlp --members digits --non-members digits --attack
    threshold[/]

    LiRA with references: [bold]bastion membership model.py:net --weights model.safetensors --members
    npz:train.npz --non-members npz:heldout.npz --population npz:extra.npz --attack lira --references 16
    --epochs 20 --references-dir refs/ --json mi.json --roc mi.png[/]
    """
    from bastion.attacks.inference.references import train_references
    from bastion.cli.common import parse_bounds, resolve_device
    from bastion.data import load_dataset
    from bastion.defenses.training.config import TrainingConfig

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
    targets = _concat("targets", mem, non)
    is_member = torch.cat([torch.ones(len(mem), dtype=torch.bool), torch.zeros(len(non), dtype=torch.bool)])
    x, y = targets.x, targets.y
    extra: dict[str, Any] = {}
    refs = None
    with progress_bar() as bar, tempfile.TemporaryDirectory() as scratch:
        if needs_refs:
            pop = load_dataset(population, split=population_split, label=label) if population else None
            if pop is not None:
                _warn_overlap(targets, pop)
            pool = (
                _concat("targets+population", targets, pop) if attack == "lira" and pop else (pop or targets)
            )
            build = _factory(
                factory or model,
                None if factory else weights,
                parse_bounds(bounds) or mem.bounds,
                mean,
                std,
                resolve_device(device),
            )
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
            )
            extra = (
                {"references": refs, "ref_in": refs.assignment.keep[:, : len(targets)]}
                if attack == "lira"
                else {"references": refs}
            )
        result = _run(
            attack, clf, x, y, is_member, extra, seed, population_size, gamma, offline_a, max_queries
        )
    _render(result, model, mem.name, non.name)
    if roc is not None:
        _plot_roc(result, roc)
    if json_path is not None:
        payload = {
            "model": model,
            "members": mem.name,
            "non_members": non.name,
            "seed": seed,
            **result.to_dict(),
        }
        write_json(json_path, payload)


def _warn_overlap(targets: Dataset, pop: Dataset) -> None:
    """The population must be disjoint from the targets: shared examples are IN references that the
    offline attacks assume are OUT (and counted twice in lira's pool)."""
    import warnings

    from bastion.provenance.hashing import input_hashes

    shared = set(input_hashes(targets.x)) & set(input_hashes(pop.x))
    if shared:
        warnings.warn(
            f"{len(shared)} example(s) of --population are also targets (--members/--non-members): the "
            "references should not train on the targets; pass disjoint population data",
            stacklevel=2,
        )


def _run(
    attack: str,
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    is_member: torch.Tensor,
    extra: dict[str, Any],
    seed: int,
    population_size: int,
    gamma: float,
    offline_a: float,
    max_queries: int,
) -> MembershipResult:
    from bastion.attacks.inference.label_only import BoundaryDistance
    from bastion.attacks.inference.lira import LiRA
    from bastion.attacks.inference.rmia import RMIA
    from bastion.attacks.inference.shadow import ShadowModels
    from bastion.attacks.inference.threshold import LossThreshold

    if attack == "threshold":
        return LossThreshold().run(clf, x, y, is_member, seed=seed)
    if attack == "label-only":
        return BoundaryDistance(max_queries=max_queries).run(clf, x, y, is_member, seed=seed)
    if attack == "shadow":
        return ShadowModels().run(clf, x, y, is_member, references=extra["references"], seed=seed)
    if attack == "rmia":
        rmia = RMIA(gamma=gamma, a=offline_a, population_size=population_size)
        return rmia.run(clf, x, y, is_member, references=extra["references"], seed=seed)
    return LiRA(online=attack == "lira").run(clf, x, y, is_member, seed=seed, **extra)


def _render(result: MembershipResult, model: str, members: str, non_members: str) -> None:
    table = Table(title=f"{result.attack} on {model}: {members} vs {non_members}", title_justify="left")
    columns = ("members", "non-mem.", "AUC", "bal. acc", "TPR@0.1%FPR", "TPR@1%FPR", "queries", "seconds")
    for col in columns:
        table.add_column(col, justify="right")
    table.add_row(
        str(result.n_members),
        str(result.n_non_members),
        f"{result.auc:.4f}",
        f"{result.balanced_accuracy:.2%}",
        f"{result.tpr_at_0_1pct_fpr:.2%}",
        f"{result.tpr_at_1pct_fpr:.2%}",
        f"{result.queries:,}",
        f"{result.seconds:.1f}",
    )
    out.print(table)
    refs = result.params.get("references")
    if refs:
        out.print(
            f"{refs} reference model(s); {result.params.get('reference_queries', 0):,} queries to them "
            "(the attacker's own models, not the target's)",
            highlight=False,
        )
    n = result.n_non_members
    if n < 1000:
        out.print(
            f"with {n} non-members the lowest false-positive rate measurable is {1 / n:.2%}: "
            "TPR@0.1% FPR is the TPR at zero false positives (no interpolation)",
            highlight=False,
        )


def _plot_roc(result: MembershipResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result.roc()
    floor = 1 / max(result.n_non_members, 1) / 2
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(
        curve.fpr.clamp_min(floor),
        curve.tpr.clamp_min(floor),
        label=f"{result.attack} (AUC {result.auc:.3f})",
    )
    ax.plot([floor, 1], [floor, 1], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    err.print(f"ROC curve written to {path}")
