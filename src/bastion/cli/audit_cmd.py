"""``bastion audit`` and ``bastion report compare``: the red-team report and its diff."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bastion.cli._engine_opts import AddressOpt, EngineOpt, ResumeOpt, ThreadsOpt, WorkersOpt, shard_model
from bastion.cli.app import (
    BatchOpt,
    BoundsOpt,
    DataArg,
    LabelOpt,
    ModelArg,
    SplitOpt,
    WeightsOpt,
    app,
)
from bastion.cli.common import (
    DEVICE_HELP,
    EPSILON_HELP_SUFFIX,
    MEAN_HELP,
    STD_HELP,
    err,
    friendly_errors,
    load_inputs,
    out,
    parse_epsilon,
    progress_bar,
    write_json,
)

report_app = typer.Typer(help="Work with audit reports (report.json).", no_args_is_help=True)
app.add_typer(report_app, name="report")

_SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}


@app.command()
@friendly_errors
def audit(
    model: ModelArg,
    data: DataArg,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            rich_help_panel="Reports",
            help="Folder for report.html, report.json, summary.md.",
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="TOML audit file; flags given here override it.",
        ),
    ] = None,
    norm: Annotated[
        str | None,
        typer.Option(
            "--norm",
            rich_help_panel="Threats and attacks",
            metavar="NORM",
            help="Norm for every --epsilon: linf or l2.",
        ),
    ] = None,
    epsilon: Annotated[
        list[str] | None,
        typer.Option(
            "--epsilon",
            "-e",
            metavar="EPS",
            rich_help_panel="Threats and attacks",
            help="Perturbation budget; repeat for several (default 0.1). " + EPSILON_HELP_SUFFIX,
        ),
    ] = None,
    defense: Annotated[
        str | None,
        typer.Option(
            "--defense",
            rich_help_panel="Defenses and certification",
            metavar="SPEC",
            help="Audit MODEL behind input transformations, e.g. jpeg:75,bits:4 (naive and BPDA + EOT).",
        ),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            "--detector",
            rich_help_panel="Defenses and certification",
            metavar="NAME",
            help="Measure an adversarial-input detector (feature-squeezing, msp, energy) on the audit's "
            "adversarials at 5% clean FPR, and attack it adaptively.",
        ),
    ] = None,
    certify: Annotated[
        str | None,
        typer.Option(
            "--certify",
            rich_help_panel="Defenses and certification",
            metavar="METHOD",
            help="Also prove a lower bound on robust accuracy. ibp: the linf threats, deterministic, for "
            "feed-forward networks (train with harden --method ibp). smoothing:SIGMA (e.g. smoothing:0.25): "
            "the l2 threats with probability 1 - alpha, for the smoothed classifier (train with harden "
            "--method noise --sigma SIGMA). See docs/audit.md.",
            show_default=False,
        ),
    ] = None,
    certify_n: Annotated[
        int | None,
        typer.Option(
            "--certify-n",
            min=1,
            rich_help_panel="Defenses and certification",
            metavar="N",
            help="smoothing: noise draws per input that bound its certificate (default 10,000; more draws, "
            "larger radii, proportionally slower).",
            show_default=False,
        ),
    ] = None,
    certify_alpha: Annotated[
        float | None,
        typer.Option(
            "--certify-alpha",
            rich_help_panel="Defenses and certification",
            metavar="ALPHA",
            help="smoothing: the chance that a certificate is wrong (default 0.001, Cohen et al.'s); a "
            "larger alpha certifies larger radii from the same draws.",
            show_default=False,
        ),
    ] = None,
    scan_model: Annotated[
        str | None,
        typer.Option(
            "--scan-model",
            rich_help_panel="Training-time threats",
            metavar="METHOD",
            help="Also look for a backdoor in MODEL. neural-cleanse (Wang et al. 2019): the smallest trigger "
            "per class from the audited inputs (use at least 100); an outlier class is finding BA401 "
            "(high). Seconds on digits, minutes on larger images. See docs/audit.md.",
            show_default=False,
        ),
    ] = None,
    scan_data: Annotated[
        str | None,
        typer.Option(
            "--scan-data",
            rich_help_panel="Training-time threats",
            metavar="METHOD",
            help="Also scan the training data (--training-data) through MODEL: ac or spectral (one pass; a "
            "class whose activations split apart is BA402, high), label-noise (retrains MODEL 4 times, "
            "slow; many confidently rejected labels is BA403, medium). Several, comma-separated "
            "(ac,spectral), are compared: a class one reports and another does not is BA405, medium.",
            show_default=False,
        ),
    ] = None,
    scan_layer: Annotated[
        str | None,
        typer.Option(
            "--scan-layer",
            rich_help_panel="Training-time threats",
            metavar="LAYER",
            help="--scan-data ac|spectral: the layer scanned (default: penultimate, the input of the last "
            "Linear; features, the input of the first Linear: a CNN's flattened conv features, where a "
            "max-pooling net's poison separates; or a sub-module name such as 5).",
            show_default=False,
        ),
    ] = None,
    training_data: Annotated[
        str | None,
        typer.Option(
            "--training-data",
            rich_help_panel="Training-time threats",
            metavar="SPEC",
            help="The data MODEL was trained on, as a data spec (e.g. npz:train.npz, digits; its train split "
            "where the format has splits), for --scan-data, --training-manifest and --privacy membership "
            "(its members; required there). It is loaded before any attack, so a wrong path fails at once.",
            show_default=False,
        ),
    ] = None,
    training_manifest: Annotated[
        Path | None,
        typer.Option(
            "--training-manifest",
            rich_help_panel="Training-time threats",
            metavar="FILE",
            help="Verify the training data against this manifest (`bastion data manifest SPEC --out FILE`): "
            "any changed, added or removed sample or source file is finding BA404 (high).",
            show_default=False,
        ),
    ] = None,
    privacy: Annotated[
        str | None,
        typer.Option(
            "--privacy",
            rich_help_panel="Privacy",
            metavar="PARTS",
            help="Also measure what the deployed model leaks (comma-separated): extraction (BA501), "
            "membership (BA502; needs --training-data), inversion (BA503). See docs/audit.md.",
            show_default=False,
        ),
    ] = None,
    output_policy: Annotated[
        str | None,
        typer.Option(
            "--output-policy",
            rich_help_panel="Privacy",
            metavar="POLICY",
            help="What the deployed API releases, for the privacy attacks: probs (default), labels, topK "
            "(e.g. top3), roundD (e.g. round2).",
            show_default=False,
        ),
    ] = None,
    privacy_pool: Annotated[
        str | None,
        typer.Option(
            "--privacy-pool",
            rich_help_panel="Privacy",
            metavar="DATA",
            help="extraction: the attacker's query pool (a data spec; default: two thirds of the audited "
            "data, the worst case).",
            show_default=False,
        ),
    ] = None,
    privacy_budget: Annotated[
        str | None,
        typer.Option(
            "--privacy-budget",
            rich_help_panel="Privacy",
            metavar="N[,N...]",
            help="extraction: query budgets of the fidelity curve (default 500,2000; capped to the pool's "
            "size).",
            show_default=False,
        ),
    ] = None,
    privacy_references: Annotated[
        int | None,
        typer.Option(
            "--privacy-references",
            min=0,
            rich_help_panel="Privacy",
            metavar="N",
            help="membership: reference models RMIA trains (default 2; 0: the loss threshold only).",
            show_default=False,
        ),
    ] = None,
    privacy_evaluator: Annotated[
        str | None,
        typer.Option(
            "--privacy-evaluator",
            rich_help_panel="Privacy",
            metavar="MODEL",
            help="inversion: an independent classifier (a model spec) that judges the reconstructions.",
            show_default=False,
        ),
    ] = None,
    privacy_evaluator_weights: Annotated[
        str | None,
        typer.Option(
            "--privacy-evaluator-weights",
            rich_help_panel="Privacy",
            metavar="FILE",
            help="Weights for a FILE.py:factory --privacy-evaluator.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            rich_help_panel="Threats and attacks",
            metavar="NAME",
            help="Attack preset per threat: fast, standard (default), thorough, or autoattack (the published "
            "AutoAttack protocol stage for stage, for numbers comparable with RobustBench's).",
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            rich_help_panel="Verdict (exit code)",
            metavar="SEVERITY",
            help="Exit 1 on a finding of this severity or worse: low|medium|high.",
        ),
    ] = None,
    min_robust_accuracy: Annotated[
        float | None,
        typer.Option(
            "--min-robust-accuracy",
            min=0.0,
            max=1.0,
            rich_help_panel="Verdict (exit code)",
            metavar="FRACTION",
            help="Exit 1 when robust accuracy is below this.",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            rich_help_panel="Threats and attacks",
            metavar="N",
            help="Audit N samples, a seeded subset (default 500).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            rich_help_panel="Threats and attacks",
            metavar="N",
            help="Seed for the subset and every attack.",
        ),
    ] = None,
    eot: Annotated[
        int | None,
        typer.Option(
            "--eot",
            min=1,
            rich_help_panel="Threats and attacks",
            metavar="N",
            help="EOT samples per gradient for randomised models.",
        ),
    ] = None,
    checks: Annotated[
        bool | None,
        typer.Option(
            "--checks/--no-checks",
            rich_help_panel="Threats and attacks",
            help="Run the attack-quality checks (BA2xx).",
        ),
    ] = None,
    curve: Annotated[
        bool | None,
        typer.Option(
            "--curve/--no-curve",
            rich_help_panel="Threats and attacks",
            help="Robust accuracy against epsilon until ~0.",
        ),
    ] = None,
    physical: Annotated[
        bool | None,
        typer.Option(
            "--physical/--no-physical",
            rich_help_panel="Threats and attacks",
            help="Images: also patches (2%, 10%; PNG in the report), a universal perturbation, rotations "
            "and shifts, corruptions (BA701-BA704; docs/audit.md).",
            show_default=False,
        ),
    ] = None,
    sarif: Annotated[
        Path | None,
        typer.Option(
            "--sarif",
            rich_help_panel="Reports",
            help="Also write the findings as SARIF 2.1.0 to FILE, for code-scanning dashboards: one rule per "
            "finding code (with its MITRE ATLAS and OWASP ML Top 10 IDs), one result per finding.",
            show_default=False,
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit",
            rich_help_panel="Reports",
            help="Also write a JUnit XML report to FILE, for CI test reports: one test case per check run, "
            "a failure for each failed check.",
            show_default=False,
        ),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            "--text-column",
            rich_help_panel="Text and tabular models",
            metavar="NAME",
            help="Text model: csv:FILE's text column.",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            rich_help_panel="Text and tabular models",
            metavar="FILE",
            help="Tabular model: its feature schema JSON.",
            show_default=False,
        ),
    ] = None,
    threat_preset: Annotated[
        str | None,
        typer.Option(
            "--threat-preset",
            rich_help_panel="Text and tabular models",
            metavar="NAME",
            help="Tabular: a named threat (german_credit...).",
            show_default=False,
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            rich_help_panel="Text and tabular models",
            metavar="B",
            help="Tabular: the total change budget.",
            show_default=False,
        ),
    ] = None,
    text_attacks: Annotated[
        str | None,
        typer.Option(
            "--text-attacks",
            rich_help_panel="Text and tabular models",
            metavar="NAMES",
            help="Text: attacks to run (default all five).",
            show_default=False,
        ),
    ] = None,
    text_presets: Annotated[
        str | None,
        typer.Option(
            "--text-presets",
            rich_help_panel="Text and tabular models",
            metavar="NAMES",
            help="Text: paper and/or strict (default both).",
            show_default=False,
        ),
    ] = None,
    text_queries: Annotated[
        int | None,
        typer.Option(
            "--text-queries",
            min=1,
            rich_help_panel="Text and tabular models",
            metavar="N",
            help="Text: query budget per text (default none).",
            show_default=False,
        ),
    ] = None,
    weights: WeightsOpt = None,
    split: SplitOpt = "test",
    label: LabelOpt = None,
    bounds: BoundsOpt = None,
    batch_size: BatchOpt = 500,
    mean: Annotated[
        str | None,
        typer.Option("--mean", metavar="M[,M,M]", help=MEAN_HELP),
    ] = None,
    std: Annotated[str | None, typer.Option("--std", metavar="S[,S,S]", help=STD_HELP)] = None,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    resume: ResumeOpt = None,
) -> None:
    """Red-team a model from every configured angle and write a report a reviewer reads in five minutes.

    Runs model pre-checks, the attack cascade per threat, black-box, transfer and noise probes, and the
    checks that tell whether the evaluation itself can be trusted (gradient masking); with --scan-model,
    --scan-data or --training-manifest, also the training-time threats (backdoor, poisoned or mislabeled
    training data, tampering; findings BA4xx); with --privacy, what the deployed model leaks (extraction,
    membership, inversion; findings BA5xx). Writes
    [bold]report.html[/] (self-contained), [bold]report.json[/] (versioned schema) and [bold]summary.md[/].

    Exit code: 0 when the audit passes, 1 when a finding reaches --fail-on or robust accuracy is below
    --min-robust-accuracy, 2 on a usage error.

    Text models (zoo:sst2-wordcnn, sst2, --text-column): attacks and sanitiser (BA601); tabular models
    (--schema): the constrained cascade, MCC, degenerate flag (BA602). See docs/audit.md.

    Example: [bold]bastion audit zoo:digits-cnn digits --epsilon 0.1 --epsilon 0.2 --out audit-report[/]

    Long audits: --engine ray (--workers, --address) sends the attack batches on the model to Ray tasks,
    --resume DIR keeps each finished batch so a rerun after an interruption skips them; the report is the
    same (docs/engine.md).
    """
    from bastion.audit import AuditConfig, load_config, run_audit, write_report
    from bastion.cli._audit_modal import load_tabular_audit, load_text_audit, modality, refuse_image_options
    from bastion.errors import DataError, ThreatModelError

    cfg = load_config(config) if config is not None else AuditConfig()
    changes: dict[str, Any] = {
        "preset": preset,
        "defense": defense,
        "detector": detector,
        "certify": certify,
        "certify_n": certify_n,
        "certify_alpha": certify_alpha,
        "scan_model": scan_model,
        "scan_data": scan_data,
        "scan_layer": scan_layer,
        "training_data": training_data,
        "training_manifest": str(training_manifest) if training_manifest is not None else None,
        "privacy": privacy,
        "output_policy": output_policy,
        "privacy_pool": privacy_pool,
        "privacy_budget": privacy_budget,
        "privacy_references": privacy_references,
        "privacy_evaluator": privacy_evaluator,
        "privacy_evaluator_weights": privacy_evaluator_weights,
        "fail_on": fail_on,
        "min_robust_accuracy": min_robust_accuracy,
        "limit": limit,
        "seed": seed,
        "eot_samples": eot,
        "checks": checks,
        "curve": curve,
        "physical": physical,
        "batch_size": batch_size if batch_size != 500 else None,
        "text_attacks": text_attacks,
        "text_presets": text_presets,
        "text_max_queries": text_queries,
    }
    if epsilon or norm:
        norms = {n for n, _ in cfg.threats}
        chosen = norm or (next(iter(norms)).value if len(norms) == 1 else "linf")
        budgets = [parse_epsilon(e) for e in epsilon] if epsilon else sorted({e for _, e in cfg.threats})
        changes["threats"] = tuple((chosen, e) for e in budgets)
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    kind = modality(model, data, text_column=text_column, schema=schema)
    from bastion.engine import get_engine

    runner = get_engine(engine, address=address, workers=workers, threads=threads)  # typos fail first
    threat: Any = None
    if kind == "image":
        if threat_preset is not None or budget is not None:
            raise ThreatModelError("--threat-preset and --budget are for tabular models: pass --schema FILE")
        # Data outside the model's bounds is not refused here: the audit reports it (BA106) in a report.
        try:
            clf, ds = load_inputs(
                model,
                data,
                weights=weights,
                split=split,
                label=label,
                bounds=bounds,
                limit=cfg.limit,
                seed=cfg.seed,
                mean=mean,
                std=std,
                device=device,
                check_bounds=False,
            )
        except DataError as exc:  # words in a CSV read as image/vector features: say how to audit text
            if "is not a number" not in str(exc):
                raise
            raise DataError(
                f"{exc}; to audit a text model pass --text-column NAME, a tabular one --schema FILE"
            ) from None
        if bounds is not None:  # declared here: not the range a loader guessed from the data (BA110)
            ds = replace(ds, meta={**ds.meta, "bounds_source": "declared"})
    else:
        refuse_image_options(
            kind,
            {"--epsilon": epsilon, "--norm": norm, "--defense": defense, "--detector": detector,
             "--certify": certify, "--scan-model": scan_model, "--scan-data": scan_data,
             "--training-manifest": training_manifest, "--privacy": privacy, "--weights": weights,
             "--bounds": bounds, "--mean": mean, "--std": std, "--physical": physical},
        )  # fmt: skip
        if kind == "text":
            clf, ds = load_text_audit(
                model, data, split=split, text_column=text_column, label=label, limit=cfg.limit,
                seed=cfg.seed,
            )  # fmt: skip
        else:
            clf, ds, threat = load_tabular_audit(
                model, data, schema=schema, threat_preset=threat_preset, budget=budget,
                limit=cfg.limit, seed=cfg.seed,
            )  # fmt: skip
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def on_progress(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=max(total, 1))
            bar.update(tasks[task], completed=done if total else 1, total=max(total, 1))

        batches = None
        sections: tuple[Any, ...] | None = None
        if kind == "text" and (runner.name != "local" or resume is not None):
            from bastion.audit.sections import TextSection

            sections = (TextSection(engine=runner, spec=model, run_dir=resume),)  # shards of 50 texts
        elif kind == "tabular" and (runner.name != "local" or resume is not None):
            from bastion.audit.sections import TabularSection

            sections = (TabularSection(engine=runner, spec=model, run_dir=resume),)  # shards of 500
        elif runner.name != "local" or resume is not None:
            from bastion.engine.batches import AttackBatches

            target = shard_model(runner, clf, model, weights=weights, mean=mean, std=std, device=device)
            batches = AttackBatches(runner, clf, None if target is clf else target, resume)
        report = run_audit(
            clf, ds, cfg, progress=on_progress, model_name=model, threat=threat, batches=batches,
            sections=sections,
        )  # fmt: skip
    paths = write_report(report, str(out_dir))
    also = []
    if sarif is not None:
        from bastion.audit.sarif import write_sarif

        also.append(f"SARIF {write_sarif(report, sarif)}")
    if junit is not None:
        from bastion.audit.junit import write_junit

        also.append(f"JUnit {write_junit(report, junit)}")
    _print_summary(report.to_dict())
    out.print(f"report: [bold]{paths['html']}[/] (also report.json, summary.md)", highlight=False)
    for line in also:
        out.print(line, highlight=False)
    if not report.passed:
        raise typer.Exit(1)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _print_summary(d: dict[str, Any]) -> None:
    from bastion.audit.report import headline_rows
    from bastion.audit.sections.tabular import tabular_lines
    from bastion.audit.sections.text import text_lines

    table = Table(
        title=f"{d['model']['name']} on {d['data']['name']} ({d['data']['n_samples']} samples)",
        title_justify="left",
    )
    for col in ("threat", "clean", "robust (adaptive)", "white-box only"):
        table.add_column(col, justify="left" if col == "threat" else "right")
    for t in d["threats"]:
        table.add_row(
            t["label"],
            _pct(d["clean"]["accuracy"]),
            f"[bold]{_pct(t['robust_accuracy'])}[/]",
            _pct(t["naive_robust_accuracy"]),
        )
    for h in headline_rows(d):
        table.add_row(
            escape(h["label"]), _pct(h["clean_accuracy"]), f"[bold]{_pct(h['robust_accuracy'])}[/]", "n/a"
        )
    out.print(table)
    for key, lines in (("text", text_lines), ("tabular", tabular_lines)):
        if d.get(key):
            for line in lines(d[key])[2:-1]:
                out.print(escape(line.removeprefix("- ").replace("**", "")), highlight=False)
    _print_certification(d.get("certification"))
    if d.get("training_threats"):
        from bastion.audit.render import training_lines

        for line in training_lines(d["training_threats"])[2:-1]:
            out.print(line.removeprefix("- ").replace("**", "").replace("`", ""), highlight=False)
    _print_privacy(d.get("privacy"))
    if d.get("physical"):
        from bastion.audit.sections.physical import physical_lines

        for line in physical_lines(d["physical"])[2:-1] or physical_lines(d["physical"])[:1]:
            out.print(escape(line.removeprefix("- ").replace("**", "").replace("`", "")), highlight=False)
    for f in d["findings"]:
        style = _SEVERITY_STYLE[f["severity"]]
        where = f" ({f['threat']})" if f["threat"] else ""
        out.print(
            f"[{style}]{f['severity'].upper():6}[/] {f['code']} {f['title']}{where}: {f['detail']}",
            highlight=False,
        )
    from bastion.audit.verdict import headline

    word, _, gates = headline(d).partition(" — ")
    style = "bold green" if d["verdict"]["passed"] else "bold red"
    out.print(f"verdict: [{style}]{word}[/] — {gates}", highlight=False, soft_wrap=True)


def _print_privacy(block: dict[str, Any] | None) -> None:
    if not block:
        return
    policy = block["output_policy"]
    ex = block.get("extraction")
    if ex:
        if ex["refused"]:
            out.print(f"extraction: [yellow]refused[/]: {ex['refused']}", highlight=False)
        for run in ex.get("runs", []):
            out.print(
                f"extraction ({run['output']}): clone fidelity [bold]{_pct(run['fidelity'])}[/] after "
                f"{run['queries']:,} queries ({ex['pool_kind']})",
                highlight=False,
            )
    mi = block.get("membership")
    if mi:
        if mi["refused"]:
            out.print(f"membership: [yellow]refused[/]: {mi['refused']}", highlight=False)
        for a in mi.get("attacks", []):
            out.print(
                f"membership ({a['attack']}, {policy}): AUC [bold]{a['auc']:.3f}[/], TPR@0.1% FPR "
                f"{_pct(a['tpr_at_0.1%_fpr'])}, TPR@1% FPR {_pct(a['tpr_at_1%_fpr'])}",
                highlight=False,
            )
    inv = block.get("inversion")
    if inv:
        if inv["refused"]:
            out.print(f"inversion: [yellow]refused[/]: {inv['refused']}", highlight=False)
        else:
            rate = inv["evaluator_accuracy"] if inv["evaluator_accuracy"] is not None else inv["identified"]
            out.print(
                f"inversion (MI-Face, {policy}): {_pct(rate)} of {len(inv['classes'])} classes identified "
                f"(chance {_pct(inv['chance'])})",
                highlight=False,
            )


def _print_certification(cert: dict[str, Any] | None) -> None:
    if not cert:
        return
    what = (
        "ibp" if cert["method"] == "ibp" else f"smoothing σ={cert['params']['sigma']:g} (smoothed classifier)"
    )
    if cert["refused"]:
        out.print(f"certified ({what}): [yellow]refused[/]: {cert['refused']}", highlight=False)
    elif cert["note"]:
        out.print(f"certified ({what}): {cert['note']}", highlight=False)
    for c in cert["threats"]:
        if c["status"] == "measured":
            between = " — the truth lies between" if cert["method"] == "ibp" else ""
            out.print(
                f"certified ({what}) {c['label']}: [bold]{_pct(c['certified_accuracy'])}[/]; attacks: "
                f"{_pct(c['robust_accuracy'])} robust{between}",
                highlight=False,
            )


@report_app.command("compare")
@friendly_errors
def report_compare(
    old: Annotated[Path, typer.Argument(help="The earlier report.json.", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The later report.json.", show_default=False)],
    fail_on_regression: Annotated[
        bool, typer.Option("--fail-on-regression", help="Exit 1 if any accuracy fell or a finding appeared.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help="Accuracy drop (fraction) still not a regression.")
    ] = 0.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the comparison as JSON.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Compare reports of different models or data (refused by default: apples and pears).",
        ),
    ] = False,
) -> None:
    """Show what got better or worse between two audits: clean, robust and certified accuracy per threat,
    new and resolved findings (training-time threats included) and the verdict.

    Example: [bold]bastion report compare main/report.json branch/report.json --fail-on-regression[/]
    """
    from bastion.audit.compare import check_comparable, compare_reports, incomparable, read_report

    before, after = read_report(old), read_report(new)
    if force:
        for why in incomparable(before, after):
            err.print(f"[yellow]warning:[/] comparing different things (--force): {why}", highlight=False)
    else:
        check_comparable(before, after)
    cmp = compare_reports(before, after)
    table = Table(title=f"{old} → {new}", title_justify="left")
    for col in ("metric", "old", "new", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for metric, o, n, d in cmp.metrics:
        if d is None:
            change = "—"
        else:
            style = "green" if d > 1e-9 else "red" if d < -1e-9 else "dim"
            change = f"[{style}]{100 * d:+.1f} pts[/]"
        table.add_row(metric, _pct(o), _pct(n), change)
    out.print(table)
    for f in cmp.new_findings:
        out.print(f"[red]new[/]      {f['code']} {f['title']} ({f['threat'] or 'model'})", highlight=False)
    for f in cmp.resolved_findings:
        out.print(f"[green]resolved[/] {f['code']} {f['title']} ({f['threat'] or 'model'})", highlight=False)
    was, now = cmp.verdict
    out.print(f"verdict: {'PASS' if was else 'FAIL'} → {'PASS' if now else 'FAIL'}", highlight=False)
    if json_path is not None:
        write_json(json_path, cmp.to_dict(), what="comparison")
    if fail_on_regression and cmp.regressed(tolerance):
        for why in cmp.regressions(tolerance) or ["a metric fell"]:
            err.print(f"[bold red]regression:[/] {why}", highlight=False)
        raise typer.Exit(1)
