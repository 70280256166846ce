"""The Typer application. Commands stay thin: parse -> library call -> render -> exit code."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
from rich.table import Table

from bastion.cli._engine_opts import (
    AddressOpt,
    EngineOpt,
    ResumeOpt,
    ShardSizeOpt,
    ThreadsOpt,
    WorkersOpt,
    shard_model,
)
from bastion.cli.common import (
    DATA_HELP,
    DEVICE_HELP,
    EPSILON_HELP_SUFFIX,
    MEAN_HELP,
    MODEL_HELP,
    STD_HELP,
    err,
    friendly_errors,
    load_inputs,
    load_victim_inputs,
    out,
    parse_epsilon,
    progress_bar,
    write_json,
    write_npz,
)
from bastion.errors import AttackError
from bastion.threat import format_epsilon

if TYPE_CHECKING:
    from bastion.defenses import DefenseEvaluation, Transform
    from bastion.threat import ThreatModel

app = typer.Typer(
    name="bastion",
    help="Red-team and harden PyTorch models: attack them, measure robust accuracy, audit them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
zoo_app = typer.Typer(help="Built-in models trained by bastion's own seeded script.", no_args_is_help=True)
attacks_app = typer.Typer(help="The registered attacks.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
app.add_typer(attacks_app, name="attacks")

ModelArg = Annotated[str, typer.Argument(help=MODEL_HELP, show_default=False)]
DataArg = Annotated[str, typer.Argument(help=DATA_HELP, show_default=False)]
NormOpt = Annotated[str, typer.Option("--norm", help="Perturbation norm: linf or l2.")]
EpsOpt = Annotated[
    str,
    typer.Option(
        "--epsilon",
        "-e",
        metavar="EPS",
        help="Perturbation budget in input units (e.g. 0.3 for MNIST linf, 8/255 for CIFAR-10). "
        + EPSILON_HELP_SUFFIX,
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
MeanOpt = Annotated[str | None, typer.Option("--mean", metavar="M[,M,M]", help=MEAN_HELP, show_default=False)]
StdOpt = Annotated[str | None, typer.Option("--std", metavar="S[,S,S]", help=STD_HELP, show_default=False)]
WeightsOpt = Annotated[
    str | None, typer.Option("--weights", help="Weights for a FILE.py:factory model (.safetensors or .pt).")
]
SplitOpt = Annotated[str, typer.Option("--split", help="Which split of a dataset that has splits.")]
LabelOpt = Annotated[str | None, typer.Option("--label", help="Label column for csv:FILE data.")]
BoundsOpt = Annotated[
    str | None, typer.Option("--bounds", help="Model input bounds LOW,HIGH (default: the data's bounds).")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", "-n", min=1, help="Use N samples (a seeded random subset).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the subset and the attacks' randomness.")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Inputs attacked at once.")]


def _attack_kwargs(
    name: str, steps: int | None, restarts: int | None, queries: int | None, params: list[str]
) -> dict[str, Any]:
    from bastion.attacks import info

    cls = info(name).cls
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kwargs: dict[str, Any] = {}
    for item in params:
        if "=" not in item:
            raise AttackError(f"--param takes KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            kwargs[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key.strip()] = raw
    if steps is not None:
        kwargs["steps"] = steps
    if restarts is not None:
        kwargs["restarts"] = restarts
    if queries is not None:
        kwargs["n_queries" if "n_queries" in accepted else "max_queries"] = queries
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise AttackError(
            f"{name} has no hyperparameter {', '.join(unknown)}; it accepts: {', '.join(sorted(accepted))}"
        )
    return kwargs


@app.command()
@friendly_errors
def attack(
    model: ModelArg,
    data: DataArg,
    attack: Annotated[
        str, typer.Option("--attack", "-a", help="Attack name (see 'bastion attacks list').")
    ] = "pgd",
    norm: NormOpt = "linf",
    epsilon: EpsOpt = "0.1",
    steps: Annotated[int | None, typer.Option(help="Iterations, for iterative attacks.")] = None,
    restarts: Annotated[int | None, typer.Option(help="Random restarts, where supported.")] = None,
    queries: Annotated[
        int | None, typer.Option(help="Query budget per input, for black-box attacks.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Any hyperparameter as KEY=VALUE.")
    ] = None,
    targeted: Annotated[
        bool, typer.Option(help="Attack a random other class per input (saved as 'targets' with --out).")
    ] = False,
    weights: WeightsOpt = None,
    split: SplitOpt = "test",
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 256,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write x, x_adv, y, success, distance, predictions, clean_predictions (and targets) "
            "to a .npz.",
        ),
    ] = None,
    json_path: JsonOpt = None,
    preset: Annotated[
        str,
        typer.Option(help="Text attacks: the threat preset, 'paper' (the paper's thresholds) or 'strict'."),
    ] = "paper",
    text_column: Annotated[
        str, typer.Option("--text-column", help="Text attacks: the text column of csv:FILE data.")
    ] = "text",
    sanitise: Annotated[
        bool,
        typer.Option(
            help="Text attacks: attack the model behind the sanitiser (NFKC, invisible, confusables)."
        ),
    ] = False,
    schema: Annotated[
        Path | None,
        typer.Option(help="Tabular data: the feature schema JSON (types, codes, ranges, what may move)."),
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Tabular attacks: total change budget (range-normalised cost).")
    ] = None,
    threat_preset: Annotated[
        str | None,
        typer.Option(help="Tabular attacks: a named threat (german_credit, default_credit_taiwan)."),
    ] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    resume: ResumeOpt = None,
    shard_size: ShardSizeOpt = 500,
) -> None:
    """Run one attack and report clean accuracy, the success rate on the inputs the model classified
    correctly, the distances of the adversarials it found, and its cost.

    Inputs the model already misclassifies are not counted as successes (they need no perturbation):
    success rate and median distance are over the correctly classified inputs only.

    Text models take the text attacks (deepwordbug, invisible, homoglyph, textfooler, pwws) with a
    --preset; every edit is checked against the preset's constraints before it counts, and successful
    edits are shown.

    Example: [bold]bastion attack zoo:digits-cnn digits --attack pgd --norm linf --epsilon 0.1 --limit 200[/]

    Text: [bold]bastion attack zoo:sst2-wordcnn sst2 --split validation --attack pwws --preset strict[/]
    (named text sets are read from $BASTION_DATA, e.g. ../shared/data)

    Tabular models take cpgd, moeva or cascade with --schema: [bold]bastion attack model.py:build
    german_credit.csv.gz --schema tabular_schema.json --attack cascade --threat-preset german_credit[/]
    """
    from bastion.cli.tabular_attack import TABULAR_ATTACKS
    from bastion.engine import get_engine
    from bastion.text.registry import TEXT_ATTACKS

    runner = get_engine(engine, address=address, workers=workers, threads=threads)  # typos fail first
    sharded = runner.name != "local" or resume is not None
    if schema is not None or attack.strip().lower() in TABULAR_ATTACKS:
        from bastion.cli.tabular_attack import run_tabular_attack

        run_tabular_attack(
            model_spec=model, data_spec=data, schema_path=schema, attack=attack, threat_preset=threat_preset,
            budget=budget, limit=limit, seed=seed, examples=5, json_path=json_path,
            engine=runner if sharded else None, resume=resume, shard_size=shard_size,
        )  # fmt: skip
        return
    if attack.strip().lower() in TEXT_ATTACKS:
        from bastion.cli.text_attack import run_text_attack

        run_text_attack(
            model_spec=model, data_spec=data, attack=attack, preset=preset, split=split,
            text_column=text_column, label=label, limit=limit, queries=queries, sanitise=sanitise,
            seed=seed, examples=5, json_path=json_path, engine=runner if sharded else None, resume=resume,
            shard_size=shard_size,
        )  # fmt: skip
        return
    from bastion.attacks import get, info
    from bastion.model import predict
    from bastion.threat import Norm, ThreatModel

    eps = parse_epsilon(epsilon)
    kwargs = _attack_kwargs(attack, steps, restarts, queries, param or [])
    atk = get(attack, **kwargs)
    chosen_norm = Norm.parse(norm)
    if chosen_norm.value not in info(attack).norms:
        raise AttackError(f"{attack} supports {', '.join(info(attack).norms)}, not --norm {chosen_norm}")
    # a black-box attack needs outputs only: it may attack a remote model (oip:http://...)
    loader = load_inputs if info(attack).access == "gradient" else load_victim_inputs
    clf, ds = loader(
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
    threat = ThreatModel(chosen_norm, eps, bounds=clf.bounds)
    targets = None
    if targeted:
        g = torch.Generator().manual_seed(seed)
        shift = torch.randint(1, ds.num_classes, (len(ds),), generator=g).to(ds.y.device)
        targets = (ds.y + shift) % ds.num_classes
    clean = predict(clf, ds.x, batch_size=batch_size).argmax(dim=1)
    target = shard_model(runner, clf, model, weights=weights, mean=mean, std=std, device=device)
    from bastion.engine import attack_sharded

    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"{atk.name} ({runner.name})", total=len(ds))
        run = attack_sharded(
            attack, kwargs, target, ds.x, ds.y, threat, targets=targets, seed=seed, batch_size=batch_size,
            shard_size=shard_size, engine=runner, run_dir=resume,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    seconds = time.perf_counter() - start
    success, distance, predictions = run.success, run.distance, run.predictions
    summary = {
        "attack": atk.name,
        "params": atk.params(),
        "model": model,
        "data": ds.name,
        "n_samples": len(ds),
        "threat": {
            "norm": threat.norm.value,
            "epsilon": threat.epsilon,
            "epsilon_label": format_epsilon(threat.epsilon),
            "bounds": list(threat.bounds),
        },
        "targeted": targeted,
        **_attack_outcome(ds.y, clean, success, distance, predictions),
        "queries": run.queries,
        "gradient_evals": run.gradient_evals,
        "seconds": seconds,
        "seed": seed,
        "engine": run.engine,
    }
    _render_attack(summary, f"{atk.name} on {model} / {ds.name} ({threat})")
    if out_path is not None:
        arrays = {
            "x_adv": run.x_adv.cpu().numpy(),
            "x": ds.x.cpu().numpy(),
            "y": ds.y.cpu().numpy(),
            "success": success.cpu().numpy(),
            "distance": distance.cpu().numpy(),
            "predictions": predictions.cpu().numpy(),
            "clean_predictions": clean.cpu().numpy(),
        }
        if targets is not None:
            arrays["targets"] = targets.cpu().numpy()
        write_npz(out_path, arrays)
        err.print(f"adversarial examples written to {out_path}")
    if json_path is not None:
        write_json(json_path, summary)


def _attack_outcome(
    y: torch.Tensor,
    clean: torch.Tensor,
    success: torch.Tensor,
    distance: torch.Tensor,
    predictions: torch.Tensor,
) -> dict[str, Any]:
    """Success and distance over the inputs the model classified correctly: an input it already gets
    wrong "succeeds" at distance 0, which would inflate the success rate and drag the median to 0."""
    correct = clean == y
    fooled = success & correct
    n_correct, n_fooled = int(correct.sum()), int(fooled.sum())
    n = int(y.shape[0])
    return {
        "clean_accuracy": n_correct / n if n else 0.0,
        "n_correct": n_correct,
        "n_fooled": n_fooled,
        "success_rate": n_fooled / n_correct if n_correct else None,
        "median_distance": float(distance[fooled].median()) if n_fooled else None,
        "robust_accuracy": float((correct & (predictions == y)).float().mean()) if n else 0.0,
        "n_already_misclassified": n - n_correct,
    }


def _render_attack(summary: dict[str, Any], title: str) -> None:
    table = Table(title=title, title_justify="left")
    columns = ("samples", "clean", "success*", "median dist*", "robust", "queries", "grad evals", "seconds")
    for key in columns:
        table.add_column(key, justify="right")
    rate, med = summary["success_rate"], summary["median_distance"]
    table.add_row(
        str(summary["n_samples"]),
        f"{summary['clean_accuracy']:.1%}",
        "-" if rate is None else f"{rate:.1%}",
        "-" if med is None else f"{med:.4f}",
        f"{summary['robust_accuracy']:.1%}",
        f"{summary['queries']:,}",
        f"{summary['gradient_evals']:,}",
        f"{summary['seconds']:.1f}",
    )
    out.print(table)
    out.print(
        f"* over the {summary['n_correct']} correctly classified input(s) ({summary['n_fooled']} fooled); "
        f"the {summary['n_already_misclassified']} already misclassified need no attack and are not counted",
        highlight=False,
    )


@app.command()
@friendly_errors
def evaluate(
    model: ModelArg,
    data: DataArg,
    norm: NormOpt = "linf",
    epsilon: EpsOpt = "0.1",
    preset: Annotated[
        str,
        typer.Option(
            help="fast (APGD-CE, APGD-T), standard (APGD-CE, then focused APGD-T and Square on the survivors "
            "nearest the boundary), autoattack (AutoAttack's published protocol, with FAB-T), "
            "thorough (more restarts, steps and queries)."
        ),
    ] = "standard",
    weights: WeightsOpt = None,
    split: SplitOpt = "test",
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 500,
    defense: Annotated[
        str | None,
        typer.Option(
            "--defense",
            help="Put the model behind input transformations, applied in order, e.g. 'jpeg:75,bits:4'. "
            "Names: jpeg[:QUALITY], bits[:BITS], median[:SIZE], resize-pad[:RATIO] (randomised). "
            "The cascade then runs twice: naive (gradients through the transforms as written) and "
            "adaptive (BPDA: exact transform forward, surrogate backward; EOT over random draws). "
            "Both are reported; believe the adaptive one.",
            show_default=False,
        ),
    ] = None,
    eot: Annotated[
        int | None,
        typer.Option(
            "--eot",
            min=1,
            help="With --defense: gradients averaged per step in the adaptive evaluation "
            "(Expectation over Transformation). Default: 20 if a transform is randomised, else 1.",
            show_default=False,
        ),
    ] = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            "--text-column", help="Text model: csv:FILE's text column (default 'text').", show_default=False
        ),
    ] = None,
    queries: Annotated[
        int | None, typer.Option("--queries", min=1, help="Text model: query budget per text and attack.")
    ] = None,
    sanitise: Annotated[
        bool,
        typer.Option(help="Text model: evaluate it behind the sanitiser (NFKC, invisible, confusables)."),
    ] = False,
    schema: Annotated[
        Path | None,
        typer.Option("--schema", help="Tabular model: its feature schema JSON.", show_default=False),
    ] = None,
    threat_preset: Annotated[
        str | None,
        typer.Option(
            help="Tabular model: a named threat (german_credit, default_credit_taiwan).", show_default=False
        ),
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Tabular model: total change budget (range-normalised cost).")
    ] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    resume: ResumeOpt = None,
    shard_size: ShardSizeOpt = 500,
) -> None:
    """Measure robust accuracy with a cascade of attacks (each stage attacks what is still robust).

    Example: [bold]bastion evaluate zoo:mnist-cnn mnist:../shared/data/mnist --epsilon 0.3 --limit 500[/]

    Defended: [bold]bastion evaluate zoo:digits-cnn digits --epsilon 0.2 --defense jpeg:75,bits:4[/]

    The inputs run in shards of --shard-size examples, each seeded from its examples, on --engine local
    or ray; --resume DIR keeps finished shards so an interrupted run picks up where it stopped:
    [bold]bastion evaluate zoo:cifar10-cnn cifar10:../shared/data/cifar10 --epsilon 8/255 --engine ray
    --workers 8 --resume runs/cifar[/]

    Text models (a text-zoo model, a named text set or --text-column): invisible characters, homoglyphs,
    DeepWordBug, PWWS, TextFooler in turn, at --preset paper and strict (default: both):
    [bold]bastion evaluate zoo:sst2-wordcnn sst2 --split validation --limit 100 --preset strict[/]

    Tabular models (--schema): constrained PGD, then the genetic search, with MCC beside robust accuracy:
    [bold]bastion evaluate model.py:build german.csv.gz --schema schema.json --threat-preset german_credit[/]
    """
    from bastion.cli._audit_modal import modality, refuse_image_options
    from bastion.engine import get_engine

    kind = modality(model, data, text_column=text_column, schema=schema)
    runner = get_engine(engine, address=address, workers=workers, threads=threads)  # typos fail first
    sharded = runner.name != "local" or resume is not None
    if kind != "image":
        from bastion.cli._evaluate_modal import run_tabular_evaluate, run_text_evaluate

        image_only = {"--defense": defense, "--eot": eot, "--weights": weights, "--bounds": bounds,
                      "--mean": mean, "--std": std}  # fmt: skip
        refuse_image_options(kind, image_only, command="evaluation")
        if kind == "text":
            run_text_evaluate(
                model_spec=model, data_spec=data, preset=preset, split=split, text_column=text_column,
                label=label, limit=limit, seed=seed, queries=queries, sanitise=sanitise, json_path=json_path,
                engine=runner if sharded else None, resume=resume, shard_size=shard_size,
            )  # fmt: skip
        else:
            run_tabular_evaluate(
                model_spec=model, data_spec=data, preset=preset, schema=schema, threat_preset=threat_preset,
                budget=budget, limit=limit, seed=seed, json_path=json_path,
                engine=runner if sharded else None, resume=resume, shard_size=shard_size,
            )  # fmt: skip
        return
    if queries is not None or sanitise or threat_preset is not None or budget is not None:
        from bastion.errors import ThreatModelError

        raise ThreatModelError(
            "--queries and --sanitise are for text models and --threat-preset/--budget for tabular ones "
            "(pass --text-column or --schema); an image evaluation's budgets come from --preset"
        )
    from bastion.evaluation import preset_attacks
    from bastion.threat import ThreatModel

    eps = parse_epsilon(epsilon)
    preset_attacks(preset)  # an unknown preset fails before anything loads
    chain = _defense_chain(defense, eot)
    if chain is not None and sharded and any(t.randomized for t in chain):  # refused before anything loads
        random = ", ".join(t.spec() for t in chain if t.randomized)
        raise AttackError(
            f"--defense {random} is randomised and runs on the local engine without --resume (its draws "
            "come from one generator per model, not per input); deterministic transforms shard"
        )
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
    threat = ThreatModel(norm, eps, bounds=clf.bounds)
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done if total else 1)

        if chain is not None:
            from bastion.defenses import evaluate_defense

            defended = evaluate_defense(
                shard_model(runner, clf, model, weights=weights, mean=mean, std=std, device=device)
                if sharded
                else clf,
                ds.x,
                ds.y,
                threat,
                chain,
                preset,
                eot_samples=eot,
                seed=seed,
                batch_size=batch_size,
                progress=on_progress,
                engine=runner if sharded else None,
                run_dir=resume,
                shard_size=shard_size,
            )
            _render_defense(defended, model, ds.name, threat, preset, json_path)
            return
        from bastion.engine import evaluate_sharded

        target = shard_model(runner, clf, model, weights=weights, mean=mean, std=std, device=device)
        task = bar.add_task(f"{preset} ({runner.name})", total=len(ds))
        result = evaluate_sharded(
            target, ds.x, ds.y, threat, preset, seed=seed, batch_size=batch_size, shard_size=shard_size,
            engine=runner, run_dir=resume,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    payload = {"model": model, "data": ds.name, **result.to_dict(), "preset": preset}
    payload["threat"]["epsilon_label"] = format_epsilon(threat.epsilon)
    table = Table(title=f"{model} on {ds.name}: {threat}, preset {preset}", title_justify="left")
    for col in ("stage", "attacked", "fooled", "robust accuracy", "queries", "gradient evals", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    table.add_row("clean", "", "", f"{result.clean_accuracy:.2%}", "", "", "")
    for s in result.stages:
        table.add_row(
            s.attack,
            str(s.n_attacked),
            str(s.n_fooled),
            f"{s.robust_accuracy:.2%}",
            f"{s.queries:,}",
            f"{s.gradient_evals:,}",
            f"{s.seconds:.1f}",
        )
    out.print(table)
    out.print(
        f"clean accuracy [bold]{result.clean_accuracy:.2%}[/], robust accuracy "
        f"[bold]{result.robust_accuracy:.2%}[/] on {result.n_samples} samples in {result.seconds:.1f} s",
        highlight=False,
    )
    if json_path is not None:
        write_json(json_path, payload)


def _defense_chain(spec: str | None, eot: int | None) -> list[Transform] | None:
    """Parse --defense early (a typo fails before any data loads); --eot needs a defense."""
    if spec is None:
        if eot is not None:
            from bastion.defenses import DefenseError

            raise DefenseError("--eot applies to the adaptive evaluation of a --defense; add --defense SPEC")
        return None
    from bastion.defenses import parse_defense

    return parse_defense(spec)


def _render_defense(
    result: DefenseEvaluation, model: str, data: str, threat: ThreatModel, preset: str, json_path: Path | None
) -> None:
    """Naive and adaptive columns side by side, then which number to believe."""
    naive, adaptive = result.naive, result.adaptive
    table = Table(
        title=f"{model} + {result.defense} on {data}: {threat}, preset {preset}", title_justify="left"
    )
    table.add_column("stage")
    table.add_column("naive robust accuracy", justify="right")
    eot = f" + EOT-{result.eot_samples}" if result.eot_samples > 1 else ""
    table.add_column(f"adaptive (BPDA{eot})", justify="right")
    table.add_row("clean", f"{naive.clean_accuracy:.2%}", f"{adaptive.clean_accuracy:.2%}")
    naive_stages = {s.attack: s for s in naive.stages}
    for s in adaptive.stages:
        other = naive_stages.get(s.attack)
        table.add_row(
            s.attack, "" if other is None else f"{other.robust_accuracy:.2%}", f"{s.robust_accuracy:.2%}"
        )
    table.add_row(
        "[bold]robust accuracy[/]", f"{naive.robust_accuracy:.2%}", f"[bold]{adaptive.robust_accuracy:.2%}[/]"
    )
    out.print(table)
    out.print(
        f"naive robust accuracy {naive.robust_accuracy:.2%}, adaptive robust accuracy "
        f"[bold]{adaptive.robust_accuracy:.2%}[/] on {adaptive.n_samples} samples "
        f"in {naive.seconds + adaptive.seconds:.1f} s",
        highlight=False,
    )
    out.print(
        f"[bold]believe the adaptive number ({adaptive.robust_accuracy:.2%})[/]: naive gradients stop at "
        "the transforms (rounding gives zero gradients, randomness noisy ones); the adaptive evaluation "
        "differentiates a surrogate (BPDA), averages random draws (EOT) and counts what the naive one broke.",
        highlight=False,
    )
    if json_path is not None:
        payload = {"model": model, "data": data, "preset": preset, **result.to_dict()}
        write_json(json_path, payload)


@zoo_app.command("list")
@friendly_errors
def zoo_list() -> None:
    """List the built-in models with their data and clean accuracy."""
    from bastion import zoo

    table = Table(title="bastion zoo (use as zoo:NAME)", title_justify="left")
    for col in ("name", "data", "input", "clean accuracy", "parameters", "description"):
        table.add_column(col)
    for name in zoo.available():
        card = zoo.card(name)
        dataset = card.get("dataset", {})
        table.add_row(
            name,
            dataset.get("name", "") if isinstance(dataset, dict) else str(dataset),
            "x".join(str(d) for d in card.get("input_shape", [])),
            f"{card['clean_accuracy']:.2%} of {card.get('n_test', '?')}" if "clean_accuracy" in card else "",
            f"{card['parameters']:,}" if "parameters" in card else "",
            str(card.get("description", "")),
        )
    out.print(table)


@attacks_app.command("list")
@friendly_errors
def attacks_list() -> None:
    """List the attacks: norms, access needed (gradients, scores or labels only) and what they find."""
    from bastion.attacks import available, info

    kinds = {
        "gradient": "white-box (gradients)",
        "scores": "black-box (scores)",
        "decisions": "black-box (labels)",
    }
    table = Table(title="bastion attacks (use with --attack NAME)", title_justify="left")
    for col in ("name", "access", "norms", "finds", "description"):
        table.add_column(col)
    for name in available():
        entry = info(name)
        table.add_row(
            name,
            kinds.get(entry.access, entry.access),
            ", ".join(entry.norms),
            "minimum norm" if entry.minimum_norm else "within epsilon",
            entry.description,
        )
    out.print(table)


def run() -> None:
    from bastion.cli import (
        audit_cmd,  # noqa: F401  (registers `audit` and `report`)
        certify_cmd,  # noqa: F401  (registers `certify`)
        data_cmd,  # noqa: F401  (registers `data`)
        extract_cmd,  # noqa: F401  (registers `extract`)
        harden_cmd,  # noqa: F401  (registers `harden`)
        invert_cmd,  # noqa: F401  (registers `invert`)
        keys_cmd,  # noqa: F401  (registers `keys`)
        log_cmd,  # noqa: F401  (registers `log`)
        membership_cmd,  # noqa: F401  (registers `membership`)
        patch_cmd,  # noqa: F401  (registers `patch`)
        poison_cmd,  # noqa: F401  (registers `poison`)
        scan_data_cmd,  # noqa: F401  (registers `scan-data`)
        scan_model_cmd,  # noqa: F401  (registers `scan-model`)
        serve_cmd,  # noqa: F401  (registers `serve`)
        spatial_cmd,  # noqa: F401  (registers `spatial`)
        universal_cmd,  # noqa: F401  (registers `universal`)
    )

    app()
