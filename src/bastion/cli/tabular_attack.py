"""``bastion attack`` for tabular models: a feature schema, a constrained attack, verified records.

Model spec: ``FILE.py:factory`` / ``package.module:factory`` returning a
:class:`bastion.tabular.TabularClassifier` (e.g. ``train_mlp(...)`` or ``SklearnTabularClassifier``) or a
fitted scikit-learn estimator with ``predict_proba`` over the schema's records (wrapped for you). Data:
``csv:FILE`` or a ``.csv``/``.csv.gz`` path; ``--schema`` names the schema JSON (bastion's own format or
the shared ``tabular_schema.json``, whose entry is picked by the data file's name). The threat: the
schema's own mutability and per-feature limits with ``--budget``, or a named ``--threat-preset``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from bastion.cli.common import err, out, write_json
from bastion.errors import AttackError, DataError

__all__ = ["TABULAR_ATTACKS", "load_tabular_inputs", "run_tabular_attack"]

TABULAR_ATTACKS = ("cpgd", "moeva", "cascade")


def load_tabular_inputs(
    model_spec: str, data_spec: str, schema_path: Path | None, threat_preset: str | None, budget: float | None
) -> tuple[Any, Any, Any]:
    """(model, records, threat) from the command line's specs: the records of ``csv:FILE`` (or a path)
    under ``--schema``, the model over their schema, and ``--threat-preset`` (``--budget`` overriding its
    budget) or the schema's own limits with ``--budget``. Shared by ``attack`` and ``audit``."""
    from bastion.tabular import TabularSchema, TabularThreatModel, load_tabular
    from bastion.tabular.specs import load_tabular_model_spec
    from bastion.tabular.threats import threat_preset as preset_threat

    if schema_path is None:
        raise DataError("tabular data needs its feature schema: pass --schema schema.json")
    path = Path(data_spec.removeprefix("csv:"))
    data = load_tabular(path, TabularSchema.from_json(schema_path, dataset=path.name))
    model = load_tabular_model_spec(model_spec, data.schema)
    if threat_preset:
        threat = preset_threat(threat_preset, data.schema, **({} if budget is None else {"budget": budget}))
    else:
        threat = TabularThreatModel(data.schema, budget=budget)
    return model, data, threat


def run_tabular_attack(
    *,
    model_spec: str,
    data_spec: str,
    schema_path: Path | None,
    attack: str,
    threat_preset: str | None,
    budget: float | None,
    limit: int | None,
    seed: int,
    examples: int,
    json_path: Path | None,
    engine: Any = None,
    resume: Path | None = None,
    shard_size: int = 500,
) -> dict[str, Any]:
    """Attack the first ``limit`` records; print the table and ``examples`` changed records; ``--json``.
    With ``engine``, in shards on it (kept under ``resume``), with the one-pass records."""
    from bastion.tabular import CPGD, MoEvA, TabularCascade

    key = attack.strip().lower()
    if key not in TABULAR_ATTACKS:
        raise AttackError(f"unknown tabular attack {attack!r}; use one of: {', '.join(TABULAR_ATTACKS)}")
    model, data, threat = load_tabular_inputs(model_spec, data_spec, schema_path, threat_preset, budget)
    if limit is not None:
        data = data.subset(slice(0, min(limit, len(data))))
    path = Path(data_spec.removeprefix("csv:"))
    stages = {"cpgd": CPGD, "moeva": MoEvA}
    atk = TabularCascade() if key == "cascade" else stages[key]()
    if key == "cpgd" and not getattr(model, "differentiable", False):
        raise AttackError(f"{model_spec} has no gradients; use --attack moeva (or cascade) for it")
    clean = float((model(data.x).argmax(dim=1) == data.y).float().mean())  # not counted as attack queries
    start = time.perf_counter()
    # a single attack runs as a one-stage cascade: the same records, and the same on the shard runner
    cascade = atk if isinstance(atk, TabularCascade) else TabularCascade((atk,))
    if engine is None:
        outcome = cascade(model, data.x, data.y, threat, seed=seed)
    else:
        from bastion.engine import TabularModelRef, evaluate_tabular_sharded

        target = model if engine.name == "local" else TabularModelRef.create(model_spec, data.schema)
        outcome = evaluate_tabular_sharded(cascade, target, data.x, data.y, threat, seed=seed,
                                           shard_size=shard_size, engine=engine, run_dir=resume)  # fmt: skip
    result = outcome.result
    if cascade is not atk:  # report the attack itself, not its one-stage wrapper
        engine_info = {"engine": result.params["engine"]} if "engine" in result.params else {}
        result = dataclasses.replace(result, attack=atk.name, params={**atk.params(), **engine_info})
    summary = {
        **(outcome.summary() if cascade is atk else result.summary()),
        "model": model_spec,
        "data": str(path),
        "threat": threat.to_dict(),
        "threat_preset": threat_preset,
        "clean_accuracy": clean,
        "seconds": time.perf_counter() - start,
        "examples": [result.show(i) for i in result.success.nonzero().flatten().tolist()[:examples]],
    }
    _render(summary, f"{key} on {model_spec} / {path.name}")
    if json_path is not None:
        write_json(json_path, summary)
    return summary


def _render(summary: dict[str, Any], title: str) -> None:
    table = Table(title=escape(title), title_justify="left")
    for key in ("records", "clean", "success*", "robust", "constraints met", "queries/record", "seconds"):
        table.add_column(key, justify="right")
    table.add_row(
        str(summary["records"]),
        f"{summary['clean_accuracy']:.1%}",
        f"{summary['success_rate']:.1%}",
        f"{summary['robust_accuracy']:.1%}",
        f"{summary['constraint_satisfaction']:.1%}",
        f"{summary['mean_queries']:.0f}",
        f"{summary['seconds']:.1f}",
    )
    out.print(table)
    out.print(
        "* records misclassified with a valid change (already misclassified ones count, as for images); "
        "every counted record was re-checked against every constraint",
        highlight=False,
    )
    for line in summary["examples"]:
        out.print(f"  {escape(line)}", highlight=False)
    if not summary["examples"]:
        err.print("no record was flipped within the threat model")
