"""``bastion attack`` for text models: the model and data specs of text, one attack, its verified result.

Model specs: ``zoo:NAME`` (the text zoo: ``sst2-wordcnn``, ``sms-spam-wordcnn``), ``oip:http://HOST/models/NAME``
(a text model served over the Open Inference Protocol, texts sent as BYTES) or ``FILE.py:factory`` /
``package.module:factory`` returning a text classifier (a callable ``list[str] -> logits`` with
``num_classes``, a fitted scikit-learn pipeline, or a ``TorchTextClassifier``). Data specs: a named set
(``sst2``, ``sms-spam``, ``ag-news`` ... with ``--split``; read from ``$BASTION_DATA``, or ``NAME:ROOT``)
or ``csv:FILE`` / a ``.csv``/``.csv.gz``/``.tsv`` path with ``--text-column`` and ``--label``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from bastion.cli.common import err, out, progress_bar, write_json
from bastion.errors import DataError

__all__ = ["load_text_data_spec", "load_text_inputs", "run_text_attack"]

_TEXT_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")


def load_text_data_spec(spec: str, *, split: str, text_column: str, label: str | None) -> Any:
    """Labelled texts from a named set or a CSV/TSV file (``csv:FILE`` or a path with a text suffix)."""
    from bastion.text.data import TEXT_DATASETS, load_text_csv, load_text_dataset

    path = spec[4:] if spec.startswith("csv:") else spec
    if spec.startswith("csv:") or path.lower().endswith(_TEXT_SUFFIXES):
        return load_text_csv(Path(path), text_column=text_column, label_column=label or "label")
    name, _, root = (spec[5:] if spec.startswith("text:") else spec).partition(":")
    if name not in TEXT_DATASETS:
        raise DataError(
            f"unknown text data {spec!r}; use a named set ({', '.join(TEXT_DATASETS)}) or csv:FILE with "
            "--text-column and --label"
        )
    return load_text_dataset(name, split=split, root=root or None)


def load_text_inputs(
    model_spec: str, data_spec: str, *, split: str, text_column: str, label: str | None
) -> tuple[Any, Any]:
    """(model, labelled texts) from the command line's specs; refuses a model whose class count differs
    from the data's. Shared by ``attack`` and ``audit``."""
    from bastion.text.specs import load_text_model_spec

    model = load_text_model_spec(model_spec)
    data = load_text_data_spec(data_spec, split=split, text_column=text_column, label=label)
    if model.num_classes is not None and model.num_classes != data.num_classes:
        raise DataError(
            f"{model_spec} predicts {model.num_classes} classes but {data.name} has {data.num_classes}; "
            "pair the model with its own data"
        )
    return model, data


def run_text_attack(
    *,
    model_spec: str,
    data_spec: str,
    attack: str,
    preset: str,
    split: str,
    text_column: str,
    label: str | None,
    limit: int | None,
    queries: int | None,
    sanitise: bool,
    seed: int,
    examples: int,
    json_path: Path | None,
    engine: Any = None,
    resume: Path | None = None,
    shard_size: int = 500,
) -> dict[str, Any]:
    """Attack the first ``limit`` texts, print the table and ``examples`` edits, write ``--json``; with
    ``engine``, in shards on it (kept under ``resume``)."""
    from bastion.text.registry import make_text_attack
    from bastion.text.sanitise import SanitisedTextClassifier

    atk, threat = make_text_attack(attack, preset, max_queries=queries)  # an unknown name fails first
    model, data = load_text_inputs(model_spec, data_spec, split=split, text_column=text_column, label=label)
    if limit is not None:
        data = data.subset(range(min(limit, len(data))))
    if sanitise:
        model = SanitisedTextClassifier(model)
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(atk.name if engine is None else f"{atk.name} ({engine.name})", total=None)
        tell = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
        if engine is None:
            result = atk(model, list(data.texts), data.labels, threat, seed=seed, progress=tell)
        else:
            from bastion.engine import TextModelRef, attack_text_sharded

            target = model if engine.name == "local" else TextModelRef.create(model_spec, sanitise=sanitise)
            result = attack_text_sharded(
                attack, preset, target, list(data.texts), data.labels, max_queries=queries, seed=seed,
                shard_size=shard_size, engine=engine, run_dir=resume, progress=tell,
            )  # fmt: skip
    summary = {
        **result.summary(),
        "model": model_spec,
        "data": data.name,
        "preset": preset,
        "sanitised": sanitise,
        "seconds": time.perf_counter() - start,
        "examples": [
            {"original": result.originals[i], "adversarial": result.adversarials[i], "shown": result.show(i)}
            for i in result.success.nonzero().flatten().tolist()[:examples]
        ],
    }
    _render(summary, f"{atk.name} ({threat.describe()}) on {model_spec} / {data.name}")
    if json_path is not None:
        write_json(json_path, summary)
    return summary


def _render(summary: dict[str, Any], title: str) -> None:
    table = Table(title=escape(title), title_justify="left")
    for key in (
        "texts",
        "clean",
        "success*",
        "under attack",
        "queries*",
        "words*",
        "chars*",
        "invalid",
        "seconds",
    ):
        table.add_column(key, justify="right")
    table.add_row(
        str(summary["n"]),
        f"{summary['clean_accuracy']:.1%}",
        f"{summary['success_rate']:.1%}",
        f"{summary['robust_accuracy']:.1%}",
        f"{summary['mean_queries']:.0f}",
        f"{summary['mean_words_changed']:.0%}",
        f"{summary['mean_chars_changed']:.1f}",
        str(summary["invalid"]),
        f"{summary['seconds']:.1f}",
    )
    out.print(table)
    out.print(
        "* success over the texts the model got right; queries per attacked text; words (share) and "
        "characters changed per successful edit. 'invalid': edits the verifier rejected (never counted).",
        highlight=False,
    )
    for ex in summary["examples"]:
        out.print(f"  {escape(ex['shown'])}", highlight=False)
    if not summary["examples"]:
        err.print("no successful edits to show")
