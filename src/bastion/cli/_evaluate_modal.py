"""``bastion evaluate`` for text and tabular models: robust accuracy from a cascade, like for images.

Text: :func:`bastion.text.evaluate_text` at the ``paper`` and ``strict`` presets (``--preset`` picks one;
the image default ``standard`` runs both). Tabular: :class:`bastion.tabular.TabularCascade` (constrained
PGD where the model has gradients, then the genetic search) with clean accuracy, balanced accuracy and MCC
beside robust accuracy, and the degenerate-model flag. Models, data and threats load as for ``attack``
and ``audit`` (seeded ``--limit`` subsets as in the audit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from bastion.cli.common import out, progress_bar, write_json
from bastion.errors import AttackError

__all__ = ["run_tabular_evaluate", "run_text_evaluate"]

IMAGE_PRESETS = ("fast", "standard", "autoattack", "thorough")


def _text_presets(preset: str) -> tuple[str, ...]:
    from bastion.text.registry import PRESETS

    if preset == "standard":  # the image default: a text model is measured at both presets
        return PRESETS
    if preset not in PRESETS:
        raise AttackError(
            f"--preset {preset} is an image preset; a text model takes --preset paper or strict "
            "(default: both)"
        )
    return (preset,)


def run_text_evaluate(
    *, model_spec: str, data_spec: str, preset: str, split: str, text_column: str | None, label: str | None,
    limit: int | None, seed: int, queries: int | None, sanitise: bool, json_path: Path | None,
    engine: Any = None, resume: Path | None = None, shard_size: int = 500,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate a text model (behind the sanitiser with ``sanitise``: adaptive, the attacks query the
    defended model) at each preset; print one table per preset; ``--json`` holds all. With ``engine``
    the texts run in shards on it (kept under ``resume``/PRESET when given)."""
    from bastion.cli._audit_modal import load_text_audit
    from bastion.text.evaluation import evaluate_text
    from bastion.text.sanitise import SanitisedTextClassifier

    presets = _text_presets(preset)
    clf, data = load_text_audit(
        model_spec, data_spec, split=split, text_column=text_column, label=label, limit=limit, seed=seed
    )
    if sanitise:
        clf = SanitisedTextClassifier(clf)
    runs = []
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}
        for p in presets:
            if engine is not None:
                runs.append(_sharded_text(clf, model_spec, sanitise, data, p, seed, queries, engine, resume,
                                          shard_size, bar))  # fmt: skip
                continue

            def on_progress(stage: str, done: int, total: int, p: str = p) -> None:
                key = f"{stage} ({p})"
                if key not in tasks:
                    tasks[key] = bar.add_task(key, total=max(total, 1))
                bar.update(tasks[key], completed=done)

            runs.append(evaluate_text(clf, data.texts, data.labels, p, seed=seed, max_queries=queries,
                                      progress=on_progress))  # fmt: skip
    for r in runs:
        behind = " behind the sanitiser" if sanitise else ""
        title = f"{model_spec}{behind} on {data.name}: text, preset {r.preset}"
        table = Table(title=escape(title), title_justify="left")
        for col in ("stage", "attacked", "fooled", "under attack", "queries", "invalid", "seconds"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        table.add_row("clean", "", "", f"{r.clean_accuracy:.2%}", "", "", "")
        for s in r.stages:
            if s.status != "ran":
                table.add_row(s.attack, "not run", "", "", "", "", "")
                continue
            table.add_row(s.attack, str(s.attacked), str(s.fooled), f"{s.robust_accuracy:.2%}",
                          f"{s.queries:,}", str(s.invalid), f"{s.seconds:.1f}")  # fmt: skip
        out.print(table)
        bound = "" if r.complete else " (an upper bound: some attacks did not run)"
        out.print(
            f"preset {r.preset}: clean accuracy [bold]{r.clean_accuracy:.2%}[/], accuracy under attack "
            f"[bold]{r.robust_accuracy:.2%}[/]{bound} on {r.n_samples} texts in {r.seconds:.1f} s",
            highlight=False,
        )
        for s in r.stages:
            if s.reason:
                out.print(f"  {s.attack} not run: {escape(s.reason)}", highlight=False)
    payload = {"model": model_spec, "data": data.name, "modality": "text", "sanitised": sanitise,
               "presets": [r.to_dict() for r in runs]}  # fmt: skip
    if json_path is not None:
        write_json(json_path, payload)
    return payload


def _sharded_text(
    clf: Any, spec: str, sanitise: bool, data: Any, preset: str, seed: int, queries: int | None, engine: Any,
    resume: Path | None, shard_size: int, bar: Any,
) -> Any:  # fmt: skip
    """One preset's cascade on the shard runner: workers load the model from its spec (a live model on
    the local engine), progress counts texts in finished shards."""
    from bastion.engine import TextModelRef, evaluate_text_sharded

    target = clf if engine.name == "local" else TextModelRef.create(spec, sanitise=sanitise)
    task = bar.add_task(f"{preset} ({engine.name})", total=len(data.texts))
    return evaluate_text_sharded(
        target, data.texts, data.labels, preset, seed=seed, max_queries=queries, shard_size=shard_size,
        engine=engine, run_dir=None if resume is None else resume / preset,
        progress=lambda done, total: bar.update(task, completed=done, total=total),
    )  # fmt: skip


def run_tabular_evaluate(
    *, model_spec: str, data_spec: str, preset: str, schema: Path | None, threat_preset: str | None,
    budget: float | None, limit: int | None, seed: int, json_path: Path | None, engine: Any = None,
    resume: Path | None = None, shard_size: int = 500,
) -> dict[str, Any]:  # fmt: skip
    """The constrained cascade on a tabular model, with clean/balanced accuracy and MCC beside it (in
    shards on ``engine``, kept under ``resume``, when given)."""
    from bastion.cli._audit_modal import load_tabular_audit
    from bastion.tabular import TabularCascade, robustness_report

    if preset != "standard":
        raise AttackError(
            f"--preset {preset} applies to image and text models; a tabular model is evaluated with the "
            "constrained cascade (choose the threat with --threat-preset or --budget)"
        )
    clf, data, threat = load_tabular_audit(
        model_spec, data_spec, schema=schema, threat_preset=threat_preset, budget=budget, limit=limit,
        seed=seed,
    )  # fmt: skip
    with progress_bar() as bar:
        if engine is not None:
            from bastion.engine import TabularModelRef, evaluate_tabular_sharded

            target = clf if engine.name == "local" else TabularModelRef.create(model_spec, data.schema)
            task = bar.add_task(f"cascade ({engine.name})", total=len(data))
            outcome = evaluate_tabular_sharded(
                TabularCascade(), target, data.x, data.y, threat, seed=seed, shard_size=shard_size,
                engine=engine, run_dir=resume,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
        else:
            task = bar.add_task("cascade", total=None)
            outcome = TabularCascade()(clf, data.x, data.y, threat, seed=seed)
            bar.update(task, total=1, completed=1)
    report = robustness_report(clf, data.x, data.y, outcome.result)
    table = Table(title=escape(f"{model_spec} on {Path(data_spec).name}: tabular"), title_justify="left")
    for col in ("stage", "attacked", "flipped", "queries", "gradient evals", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for s in outcome.stages:
        if s.skipped:
            table.add_row(s.attack, f"skipped: {s.skipped}", "", "", "", "")
            continue
        table.add_row(s.attack, str(s.attacked), str(s.flipped), f"{s.queries:,}", f"{s.gradient_evals:,}",
                      f"{s.seconds:.1f}")  # fmt: skip
    out.print(table)
    out.print(
        f"clean accuracy [bold]{report.clean_accuracy:.2%}[/] (balanced {report.balanced_accuracy:.2%}, "
        f"MCC {report.mcc:.3f}), robust accuracy [bold]{outcome.robust_accuracy:.2%}[/], constraints met "
        f"{outcome.constraint_satisfaction:.1%} on {len(data)} records",
        highlight=False,
    )
    if report.degenerate:
        out.print(
            f"[bold red]degenerate[/]: {report.majority_prediction:.0%} of predictions are one class; its "
            "robust accuracy says little (BA602)",
            highlight=False,
        )
    payload = {"model": model_spec, "data": str(data_spec), "modality": "tabular", "threat": threat.to_dict(),
               "threat_preset": threat_preset, **report.to_dict(), **outcome.summary()}  # fmt: skip
    if "engine" in outcome.result.params:
        payload["engine"] = outcome.result.params["engine"]
    if json_path is not None:
        write_json(json_path, payload)
    return payload
