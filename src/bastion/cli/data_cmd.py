"""``bastion data manifest|verify|drift``: pin a dataset's bytes, name what changed, test for drift.

Exit codes, the same for ``verify`` and ``drift``: 0 nothing found, 1 a mismatch or drift found, 2 a
usage or input error (unreadable manifest, unknown data spec, a model that does not fit the data).
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from bastion.cli.app import DataArg, DeviceOpt, JsonOpt, LabelOpt, MeanOpt, StdOpt, WeightsOpt, app
from bastion.cli.common import DATA_HELP, MODEL_HELP, friendly_errors, out, progress_bar, write_json
from bastion.errors import DataError

if TYPE_CHECKING:
    from bastion.provenance import DriftReport, Manifest, SampleChange, VerifyReport

data_app = typer.Typer(
    help="Dataset provenance: sha256 manifests, tamper checks that name what changed, drift tests.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

ShowOpt = Annotated[int, typer.Option("--show", min=1, help="List at most N items per kind of change.")]


def _listed(items: Sequence[Any], show: int) -> str:
    text = ", ".join(str(i) for i in items[:show])
    return text + (f" ... and {len(items) - show} more" if len(items) > show else "")


@data_app.command("manifest")
@friendly_errors
def manifest_cmd(
    data: DataArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Write the manifest (JSON) here.")],
    split: Annotated[
        str, typer.Option("--split", help="Which split of a dataset that has splits.")
    ] = "train",
    label: LabelOpt = None,
) -> None:
    """Pin DATA: sha256 per source file and per sample, a Merkle root, class counts.

    Example: [bold]bastion data manifest mnist:../shared/data/mnist --out mnist.json[/]

    A sample's hash covers its pixels (as loaded, float32) and its label.
    [bold]bastion data verify DATA mnist.json[/] later names exactly which
    files and samples changed, were added or removed. --split defaults to
    train: the data a model learns from is what poisoning targets.
    """
    from bastion.data import load_dataset
    from bastion.provenance import build_manifest, source_files

    start = time.perf_counter()
    ds = load_dataset(data, split=split, label=label)
    files = source_files(ds)
    missing = sorted(str(p) for p in files.values() if not p.is_file())
    if missing:  # before the progress bar: an error is all the user should see
        raise DataError(f"source file(s) not found: {', '.join(missing)}")
    with progress_bar() as bar:
        task = bar.add_task("files", total=max(len(files), 1))

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        manifest = build_manifest(ds, files=files, spec=data, progress=tick)
    manifest.save(out_path)
    counts = ", ".join(
        f"{n}: {c:,}" for n, c in zip(manifest.class_names, manifest.class_counts, strict=True)
    )
    out.print(
        f"{ds.name}: {manifest.n_samples:,} samples of {'x'.join(map(str, manifest.shape))}, "
        f"{len(manifest.files)} source file(s), {time.perf_counter() - start:.1f} s\n"
        f"per class: {counts}\nMerkle root: {manifest.merkle_root}\nmanifest: {out_path}",
        highlight=False,
    )


def _describe(change: SampleChange) -> str:
    parts = ["pixels"] if change.input else []
    if change.label_changed:
        parts.append(f"label {change.label_before} -> {change.label_after}")
    return f"{change.index} ({' + '.join(parts)})"


def _files_at(spec: str, manifest: Manifest) -> dict[str, Path]:
    """Where the manifest's files should be, from the data spec's path (when the data will not load)."""
    location = Path(spec.partition(":")[2]).expanduser()
    root = location if location.is_dir() else location.parent
    return {f.name: root / f.name for f in manifest.files}


def _render_verify(report: VerifyReport, manifest: Manifest, show: int, load_error: str | None) -> None:
    lines = []
    for kind in ("changed", "added", "removed"):
        names = getattr(report, f"{kind}_files")
        if names:
            lines.append(f"files {kind} ({len(names)}): {_listed(names, show)}")
    if load_error is not None:
        lines.append(f"samples not checked: the data did not load ({load_error})")
    if report.n_found != report.n_expected and report.samples_checked:
        lines.append(f"sample count: {report.n_expected:,} in the manifest, {report.n_found:,} now")
    if report.changed:
        described = [_describe(c) for c in report.changed]
        lines.append(f"samples changed ({len(described)}): {_listed(described, show)}")
    if report.removed:
        lines.append(
            f"samples removed ({len(report.removed)}, manifest indices): {_listed(report.removed, show)}"
        )
    if report.added:
        lines.append(f"samples added ({len(report.added)}, current indices): {_listed(report.added, show)}")
    if report.moved:
        pairs = [f"{a}->{b}" for a, b in report.moved]
        lines.append(f"samples moved ({len(pairs)}, same content elsewhere): {_listed(pairs, show)}")
    counts = [f"{c}: {e:,} -> {f:,}" for c, e, f in report.class_counts]
    if counts:
        lines.append(f"class counts differ: {_listed(counts, show)}")
    lines.extend(report.metadata)
    if report.changed:
        lines.append("(hashes say which samples changed, not which pixels: compare with a trusted copy)")
    checked = f"{report.files_checked} file(s)" + (
        f" and {report.n_found:,} samples" if report.samples_checked else ""
    )
    if report.ok:
        out.print(
            f"[bold green]OK[/]: {checked} match the manifest (Merkle root {manifest.merkle_root[:16]}...)"
        )
        return
    out.print(f"[bold red]MISMATCH[/] against the manifest of {manifest.name} ({checked} checked)")
    for line in lines:
        out.print(f"  {line}", highlight=False)


@data_app.command("verify")
@friendly_errors
def verify_cmd(
    data: DataArg,
    manifest_path: Annotated[Path, typer.Argument(help="A manifest from `bastion data manifest`.")],
    split: Annotated[
        str | None, typer.Option("--split", help="Split to check (default: the manifest's).")
    ] = None,
    label: LabelOpt = None,
    show: ShowOpt = 10,
    json_path: JsonOpt = None,
) -> None:
    """Check DATA against a manifest: name each file and sample that changed.

    Example: [bold]bastion data verify mnist:../shared/data/mnist mnist.json[/]

    A changed sample is named by index, with whether its pixels or its label
    changed; added and removed samples are matched by hash, so one deletion
    is not reported as a shift of every later sample. Hashes cannot say
    which pixels changed.

    Exit code 0: everything matches; 1: any mismatch (a changed, added,
    removed or reordered sample, a changed file, data that no longer loads);
    2: the manifest or the data spec is unusable.
    """
    from bastion.data import load_dataset
    from bastion.provenance import VerifyReport, load_manifest, verify, verify_files

    manifest = load_manifest(manifest_path)
    chosen = split or manifest.split or "test"
    load_error = None
    try:  # before any progress bar: a bad spec is one line, nothing else
        ds = load_dataset(data, split=chosen, label=label)
    except (DataError, zipfile.BadZipFile) as exc:  # zipfile: an .npz whose CRC no longer matches
        location = data.partition(":")[2]
        if not manifest.files or not location or not Path(location).expanduser().exists():
            raise
        diff = verify_files(manifest, _files_at(data, manifest))
        if not any(diff.values()):
            raise  # the files are intact, so the error is in the command line, not the data
        load_error = str(exc)
    with progress_bar() as bar:
        task = bar.add_task("files", total=max(len(manifest.files), 1))

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if load_error is not None:
            bar.update(task, completed=len(manifest.files))  # hashed above, before the bar
            report = VerifyReport(
                changed_files=diff["changed"],
                added_files=diff["added"],
                removed_files=diff["removed"],
                files_checked=len(manifest.files),
                samples_checked=False,
                n_expected=manifest.n_samples,
                merkle_root_expected=manifest.merkle_root,
            )
        else:
            report = verify(ds, manifest, progress=tick)
    _render_verify(report, manifest, show, load_error)
    if json_path is not None:
        write_json(
            json_path,
            {"manifest": str(manifest_path), "data": data, "load_error": load_error, **report.to_dict()},
        )
    if not report.ok:
        raise typer.Exit(1)


def _render_drift(report: DriftReport, model: str | None) -> None:
    table = Table(
        title=f"most shifted features (KS, {report.features_tested} tested, "
        f"{report.features_skipped} constant skipped)",
        title_justify="left",
    )
    for col in ("feature", "position", "KS statistic", "q (BH)", "mean reference", "mean current"):
        table.add_column(col, justify="right")
    for f in report.top_features:
        flag = " *" if f.q_value < report.alpha / 2 else ""
        table.add_row(
            str(f.index),
            "(" + ", ".join(map(str, f.position)) + ")",
            f"{f.statistic:.3f}",
            f"{f.q_value:.2g}{flag}",
            f"{f.mean_reference:.3f}",
            f"{f.mean_current:.3f}",
        )
    out.print(table)
    space = f"penultimate embeddings of {model}" if model else "raw inputs (no --model)"
    out.print(
        f"KS: {report.features_drifting} of {report.features_tested} features drift (* q < "
        f"{report.alpha / 2:g}, on {report.ks_samples[0]:,} vs {report.ks_samples[1]:,} samples)\n"
        f"MMD on {space}: MMD² {report.mmd2:.3g}, p = {report.mmd_p_value:.3g} "
        f"({report.permutations} permutations, {report.mmd_samples[0]:,} vs "
        f"{report.mmd_samples[1]:,} samples)",
        highlight=False,
    )
    colour = "red" if report.drift else "green"
    out.print(f"verdict: [bold {colour}]{report.verdict}[/] at alpha {report.alpha:g}")


@data_app.command("drift")
@friendly_errors
def drift_cmd(
    reference: Annotated[str, typer.Argument(help="Reference data (e.g. the training set). " + DATA_HELP)],
    current: Annotated[str, typer.Argument(help="Data to compare with it (e.g. what arrives now).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Compare embeddings of this model. " + MODEL_HELP)
    ] = None,
    weights: WeightsOpt = None,
    reference_split: Annotated[str, typer.Option("--reference-split", help="Split of REFERENCE.")] = "train",
    current_split: Annotated[str, typer.Option("--current-split", help="Split of CURRENT.")] = "test",
    label: LabelOpt = None,
    alpha: Annotated[float, typer.Option("--alpha", help="False-alarm rate of the verdict.")] = 0.05,
    permutations: Annotated[int, typer.Option("--permutations", min=1, help="MMD relabellings.")] = 200,
    max_samples: Annotated[int, typer.Option("--max-samples", min=2, help="KS samples per side.")] = 10_000,
    mmd_samples: Annotated[int, typer.Option("--mmd-samples", min=2, help="MMD samples per side.")] = 1_000,
    top: Annotated[int, typer.Option("--top", min=1, help="Most shifted features listed.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed for subsets and permutations.")] = 0,
    mean: MeanOpt = None,
    std: StdOpt = None,
    device: DeviceOpt = "auto",
    json_path: JsonOpt = None,
) -> None:
    """Test whether CURRENT is distributed like REFERENCE (KS + MMD).

    Example: [bold]bastion data drift digits digits --model zoo:digits-mlp[/]
    (the training split against the test split)

    Per-feature two-sample KS tests, Benjamini–Hochberg corrected, name the
    inputs that moved; an MMD test (Gretton et al. 2012) on the model's
    penultimate embeddings, or on the raw inputs without --model, catches
    shifts no single feature shows. The verdict is "drift" when either test
    rejects; --alpha, the verdict's false-alarm rate, is split evenly
    between them.

    Exit code 0: no drift; 1: drift; 2: an input error.
    """
    from bastion.cli.common import load_inputs
    from bastion.data import load_dataset
    from bastion.provenance import drift_test

    clf = None
    if weights is not None and model is None:
        raise DataError("--weights belongs to a --model; add --model FILE.py:factory (or drop --weights)")
    if model is not None:
        clf, ref = load_inputs(
            model,
            reference,
            weights=weights,
            split=reference_split,
            label=label,
            bounds=None,
            limit=None,
            seed=seed,
            mean=mean,
            std=std,
            device=device,
        )
    else:
        ref = load_dataset(reference, split=reference_split, label=label)
    cur = load_dataset(current, split=current_split, label=label)
    if cur.x.device != ref.x.device:  # --device put the model and the reference there
        cur = replace(cur, x=cur.x.to(ref.x.device), y=cur.y.to(ref.x.device))
    report = drift_test(
        ref,
        cur,
        clf,
        alpha=alpha,
        max_features=top,
        permutations=permutations,
        max_samples=max_samples,
        mmd_samples=mmd_samples,
        seed=seed,
    )
    _render_drift(report, model)
    if json_path is not None:
        write_json(
            json_path, {"reference": reference, "current": current, "model": model, **report.to_dict()}
        )
    if report.drift:
        raise typer.Exit(1)
