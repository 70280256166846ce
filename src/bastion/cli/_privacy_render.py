"""What ``bastion invert``, ``membership`` and ``extract`` print and draw: tables, summaries, ROC curves
and image grids. The commands compute; this module only renders (Rich on stdout, matplotlib on demand)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.table import Table

from bastion.cli.common import err, out
from bastion.errors import DataError

if TYPE_CHECKING:
    from bastion.attacks.extraction import ExtractionResult, TransferResult
    from bastion.attacks.inference.inversion_metrics import InversionQuality
    from bastion.attacks.inference.metrics import MembershipResult
    from bastion.attacks.inference.mi_face import MIFaceResult
    from bastion.data import Dataset

__all__ = [
    "extraction_summary",
    "inversion_quality_without_ssim",
    "plot_roc",
    "render_extraction",
    "render_inversion",
    "render_membership",
    "save_inversion_grid",
]


# --- invert ---------------------------------------------------------------------------------------------


def inversion_quality_without_ssim(accuracy: float, recognised: torch.Tensor) -> InversionQuality:
    """An evaluator's verdict (accuracy, recognised (K,)) with SSIM unknown (NaN): no data, no class means."""
    from bastion.attacks.inference.inversion_metrics import InversionQuality

    nan = torch.full(recognised.shape, float("nan"), dtype=torch.float64)
    return InversionQuality(accuracy, recognised, nan, float("nan"))


def render_inversion(
    result: MIFaceResult, quality: InversionQuality | None, ssim: torch.Tensor | None, view: str
) -> None:
    """The per-class table (confidence, steps, stop reason, evaluator verdict, SSIM) and a summary line."""
    table = Table(title=f"MI-Face ({view})", title_justify="left")
    for col in ("class", "confidence", "steps", "stopped by", "recognised", "SSIM to class mean"):
        table.add_column(col, justify="left" if col == "stopped by" else "right")
    scores = quality.ssim if quality is not None else ssim
    for i, k in enumerate(result.classes.tolist()):
        table.add_row(
            str(k),
            f"{float(result.confidence[i]):.3f}",
            str(int(result.steps[i])),
            result.stop_reason[i],
            "-" if quality is None else ("yes" if bool(quality.recognised[i]) else "no"),
            "-" if scores is None or bool(torch.isnan(scores[i])) else f"{float(scores[i]):.3f}",
        )
    out.print(table)
    summary = f"queries: {result.queries}"
    if quality is not None:
        summary += f"; evaluator accuracy {quality.evaluator_accuracy:.1%}"
    if scores is not None and not bool(torch.isnan(scores).all()):
        summary += f"; mean SSIM to class means {float(scores.mean()):.3f}"
    out.print(summary, highlight=False)


def save_inversion_grid(result: MIFaceResult, path: Path, dataset: Dataset | None) -> None:
    """One column per class: the reconstruction, and the class mean below it when data is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bastion._files import atomic_write
    from bastion.attacks.inference.inversion_metrics import class_means

    if path.suffix.lower() != ".png":
        raise DataError(f"--out writes a PNG image: name it *.png, not {path.name}")
    recon = result.reconstructions.detach().cpu()
    if recon.dim() != 4:
        raise DataError(f"--out draws images (C, H, W); these inputs have shape {tuple(recon.shape[1:])}")
    rows = [recon] + ([class_means(dataset, result.classes).cpu()] if dataset is not None else [])
    low, high = dataset.bounds if dataset is not None else (float(recon.min()), float(recon.max()))
    n = recon.shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(max(1.2 * n, 2.4), 1.4 * len(rows)), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n):
            img = ((images[c] - low) / max(high - low, 1e-12)).clamp(0, 1)
            ax = axes[r][c]
            ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(int(result.classes[c])), fontsize=8)
        axes[r][0].set_ylabel("inverted" if r == 0 else "class mean", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=80), "wb")
    plt.close(fig)


# --- membership -----------------------------------------------------------------------------------------


def render_membership(result: MembershipResult, model: str, members: str, non_members: str) -> None:
    """The metrics table, the reference models' cost, and the lowest FPR the non-members can measure."""
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


def plot_roc(result: MembershipResult, path: Path) -> None:
    """The ROC curve on log-log axes (what TPR at low FPR reads off) as a PNG at ``path``."""
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


# --- extract --------------------------------------------------------------------------------------------


def extraction_summary(
    result: ExtractionResult, transfer: TransferResult | None, strategy: str
) -> dict[str, Any]:
    """The JSON summary: the clone's card, the strategy, and the transfer rate if measured."""
    card = result.card()
    card["strategy"] = strategy
    if transfer is not None:
        card["transfer"] = dict(transfer.__dict__)
    return card


def render_extraction(
    result: ExtractionResult, transfer: TransferResult | None, summary: dict[str, Any]
) -> None:
    """The budget curve (accuracy, fidelity), the queries spent and the transfer rate."""
    released = f"{summary['output_policy']} released, pool {summary['pool']}"
    title = f"{summary['attack']} on {summary['victim']} ({released})"
    table = Table(title=title, title_justify="left")
    for col in ("queries", "clone accuracy", "fidelity"):
        table.add_column(col, justify="right")
    for p in result.curve:
        acc = "-" if p.accuracy is None else f"{p.accuracy:.1%}"
        fid = "-" if p.fidelity is None else f"{p.fidelity:.1%}"
        table.add_row(f"{p.budget:,}", acc, fid)
    out.print(table)
    out.print(f"victim queries: {result.queries:,} (budget curve reuses them)", highlight=False)
    if transfer is not None:
        rate = "-" if transfer.rate is None else f"{transfer.rate:.1%}"
        out.print(
            f"transfer rate ({transfer.attack} on the clone): {rate} of {transfer.n} inputs both "
            f"classify correctly ({transfer.clone_fooled} fooled the clone)",
            highlight=False,
        )
