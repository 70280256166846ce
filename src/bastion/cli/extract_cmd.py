"""``bastion extract``: steal a model's function from its answers and measure the clone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli._privacy_render import extraction_summary, render_extraction
from bastion.cli.app import DeviceOpt, JsonOpt, ModelArg, WeightsOpt, app
from bastion.cli.common import (
    DATA_HELP,
    EPSILON_HELP_SUFFIX,
    err,
    friendly_errors,
    load_victim_inputs,
    parse_epsilon,
    progress_bar,
    write_json,
)
from bastion.errors import AttackError

if TYPE_CHECKING:
    from bastion.model import Classifier

STRATEGIES = ("uncertainty", "random", "adaptive", "jacobian")


def _released(victim: Classifier, output: str) -> Classifier:
    """The victim behind the output policy named by ``--output`` (what the attacker is answered)."""
    from bastion.defenses.output_policy import PolicyClassifier

    return PolicyClassifier(victim, output)


def _budgets(text: str | None, budget: int) -> tuple[int, ...]:
    if text is None:
        from bastion.attacks.extraction import DEFAULT_BUDGETS

        return tuple(b for b in DEFAULT_BUDGETS if b < budget)
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise AttackError(
            f"--curve takes budgets separated by commas (e.g. 250,500,1000), got {text!r}"
        ) from None


@app.command()
@friendly_errors
def extract(
    victim: ModelArg,
    pool: Annotated[
        str,
        typer.Option("--pool", help="Inputs to query (its train split). " + DATA_HELP, show_default=False),
    ],
    budget: Annotated[int, typer.Option("--budget", "-b", min=1, help="Victim queries to spend.")] = 1000,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            help="What the victim releases: probs, labels (top-1 only), top3, round2 (2 decimals).",
        ),
    ] = "probs",
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="Which inputs to send. uncertainty (active learning, Pal et al. 2020: the pool inputs "
            "the clone is least sure of, in doubling rounds; the strongest, above all label-only), random "
            "or adaptive (Knockoff Nets' bandit) from the pool, jacobian (Papernot et al.: a seed set "
            "grown along the clone's gradient).",
        ),
    ] = "uncertainty",
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the clone (FILE.safetensors) and its card (.json)."),
    ] = None,
    test_data: Annotated[
        str | None,
        typer.Option(
            "--test-data",
            help="Held-out data (its test split) for accuracy and fidelity.",
            show_default=False,
        ),
    ] = None,
    curve: Annotated[
        str | None,
        typer.Option(
            "--curve",
            help="Budgets to measure on the way (default: those of 250,500,1000,2000,5000 below --budget).",
        ),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps per clone (about).")] = 3000,
    transfer_epsilon: Annotated[
        str | None,
        typer.Option(
            "--transfer-epsilon",
            metavar="EPS",
            help="Also craft PGD (linf) adversarials on the clone and report the share that fool the victim. "
            + EPSILON_HELP_SUFFIX,
            show_default=False,
        ),
    ] = None,
    weights: WeightsOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the queries and the clone's training.")] = 0,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
) -> None:
    """Extract a clone of VICTIM from its answers on --pool and report accuracy and fidelity (agreement
    with the victim) against the number of queries.

    Example: [bold]bastion extract zoo:mnist-cnn --pool fashion-mnist:DIR --budget 5000 --output labels
    --test-data mnist:DIR --out clone.safetensors[/]
    """
    from bastion.attacks.extraction import CloneTraining, ExtractionAttack, JacobianAugmentation, KnockoffNets
    from bastion.data import load_dataset
    from bastion.defenses.output_policy import OutputPolicy

    policy = OutputPolicy.parse(output)  # any policy spec; an unknown one lists the valid forms
    if strategy not in STRATEGIES:
        raise AttackError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if out_path is not None and out_path.suffix != ".safetensors":
        raise AttackError(f"--out must end in .safetensors, got {out_path.name}")
    eps = parse_epsilon(transfer_epsilon, "--transfer-epsilon") if transfer_epsilon is not None else None
    if eps is not None and test_data is None:
        raise AttackError("--transfer-epsilon needs --test-data (the inputs to craft adversarials for)")
    model, pool_data = load_victim_inputs(
        victim,
        pool,
        weights=weights,
        split="train",
        label=None,
        bounds=None,
        limit=None,
        seed=seed,
        device=device,
    )
    test = None
    if test_data is not None:
        test = load_dataset(test_data, split="test")
        where = pool_data.x.device  # the victim's device (load_victim_inputs moved the data there)
        test = replace(test, x=test.x.to(where), y=test.y.to(where))
    training = CloneTraining(steps=steps)
    mode = "labels" if policy.kind == "labels" else "probs"
    marks = _budgets(curve, budget)
    attack: ExtractionAttack = (
        JacobianAugmentation(mode, budgets=marks, training=training)
        if strategy == "jacobian"
        else KnockoffNets(strategy, mode, budgets=marks, training=training)
    )
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done)

        result = attack.run(
            _released(model, output),
            pool_data,
            budget,
            test=test,
            reference=model,
            seed=seed,
            progress=on_progress,
        )
    transfer = None
    if eps is not None and test is not None:
        from bastion.attacks.extraction import transfer_rate
        from bastion.threat import ThreatModel

        n = min(len(test), 500)
        threat = ThreatModel("linf", eps, bounds=model.bounds)
        transfer = transfer_rate(result.classifier, model, test.x[:n], test.y[:n], threat, seed=seed)
    result = replace(
        result, info={**result.info, "victim": victim, "pool": pool, "output_policy": str(policy)}
    )
    summary = extraction_summary(result, transfer, strategy)
    render_extraction(result, transfer, summary)
    if out_path is not None:
        weights_path, card_path = result.save(out_path)
        err.print(f"clone written to {weights_path} (card: {card_path})")
    if json_path is not None:
        write_json(json_path, summary)
