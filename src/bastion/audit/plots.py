"""The report's figures as base64 PNG data URIs (matplotlib, Agg backend; nothing is shown or saved)."""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["curve_figure", "examples_figure", "per_class_figure", "triggers_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: never open a window
    import matplotlib.pyplot as plt

    return plt


def _uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def curve_figure(curve: dict[str, Any], threats: list[dict[str, Any]]) -> str:
    """Robust accuracy against epsilon for one norm, with the audited thresholds' adaptive numbers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    pts = curve["points"]
    ax.plot(
        [p["epsilon"] for p in pts],
        [100 * p["robust_accuracy"] for p in pts],
        "o-",
        color="#2b6cb0",
        label=f"{curve['attack']} (each ε from scratch)",
    )
    mine = [t for t in threats if t["norm"] == curve["norm"]]
    if mine:
        ax.plot(
            [t["epsilon"] for t in mine],
            [100 * t["robust_accuracy"] for t in mine],
            "D",
            color="#c53030",
            markersize=7,
            label="full audit (adaptive)",
        )
        naive = [t for t in mine if t["naive_robust_accuracy"] is not None]
        ax.plot(
            [t["epsilon"] for t in naive],
            [100 * t["naive_robust_accuracy"] for t in naive],
            "s",
            mfc="none",
            color="#718096",
            markersize=7,
            label="white-box only (naive)",
        )
    ax.set_xlabel(f"ε ({curve['norm']})")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _uri(fig)


def per_class_figure(clean: dict[str, Any], threat: dict[str, Any]) -> str:
    """Clean and robust accuracy per class at one threat, as paired bars."""
    plt = _pyplot()
    rows = clean["per_class"]
    robust = {r["class"]: r["robust_accuracy"] for r in threat["per_class"]}
    names = [r["name"] for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(rows) + 1.5), 3.0))
    ax.bar(
        [i - 0.2 for i in xs], [100 * r["accuracy"] for r in rows], width=0.4, label="clean", color="#a0aec0"
    )
    ax.bar(
        [i + 0.2 for i in xs],
        [100 * robust.get(r["class"], 0.0) for r in rows],
        width=0.4,
        label=f"robust ({threat['label']})",
        color="#2b6cb0",
    )
    ax.set_xticks(list(xs), names, rotation=45 if max(len(n) for n in names) > 3 else 0, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    return _uri(fig)


def examples_figure(examples: list[Any], class_names: list[str]) -> str | None:
    """One column per example: original, adversarial, perturbation (magnified to the full grey range)."""
    images = [e for e in examples if e.x.dim() == 3 and e.x.shape[0] in (1, 3)]
    if not images:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(3, len(images), figsize=(1.35 * len(images) + 0.9, 4.6), squeeze=False)

    def name(c: int) -> str:
        return class_names[c] if c < len(class_names) else str(c)

    for col, e in enumerate(images):
        delta = e.x_adv - e.x
        scale = float(delta.abs().max()) or 1.0
        lo, hi = min(0.0, float(e.x.min())), max(1.0, float(e.x.max()))
        panels = [
            (e.x, f"{name(e.label)} ({e.clean_confidence:.0%})"),
            (e.x_adv, f"{name(e.adversarial_label)} ({e.adversarial_confidence:.0%})"),
            (lo + (hi - lo) * (0.5 + 0.5 * delta / scale), f"δ ×{(hi - lo) / (2 * scale):.0f}"),
        ]
        for row, (img, title) in enumerate(panels):
            ax = axes[row][col]
            arr = ((img.clamp(lo, hi) - lo) / (hi - lo)).permute(1, 2, 0).numpy()
            ax.imshow(
                arr[..., 0] if arr.shape[2] == 1 else arr,
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("original", "adversarial", "perturbation")):
        axes[row][0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return _uri(fig)


def triggers_figure(triggers: list[Any]) -> str | None:
    """One column per flagged class: the reversed trigger as stamped on black (``mask * pattern``, shifted
    to the bounds' low end and scaled to the full grey range) and its mask (white = stamped)."""
    images = [t for t in triggers if t.pattern.dim() == 3 and t.pattern.shape[0] in (1, 3)]
    if not images:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(images), figsize=(1.9 * len(images) + 0.9, 4.0), squeeze=False)
    for col, t in enumerate(images):
        low, high = t.bounds
        stamped = (t.mask * (t.pattern - low) / (high - low)).clamp(0, 1).permute(1, 2, 0).numpy()
        panels = [
            (stamped[..., 0] if stamped.shape[2] == 1 else stamped, f"class {t.name}: trigger"),
            (t.mask[0].clamp(0, 1).numpy(), f"mask L1 {t.mask_l1:.1f}, AI {t.anomaly_index:.1f}"),
        ]
        for row, (img, title) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return _uri(fig)
