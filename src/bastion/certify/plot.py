"""The certified-accuracy curve as a PNG (matplotlib, Agg backend; imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

from bastion._files import atomic_write

__all__ = ["plot_curve"]


def plot_curve(curves: dict[str, list[tuple[float, float]]], path: Path, *, norm: str = "l2") -> None:
    """Certified accuracy (%) against radius, one step line per entry of ``curves`` (label → points).

    Certified accuracy only falls as the radius grows, so the points are joined as steps.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: never open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for label, points in curves.items():
        ax.step([r for r, _ in points], [100 * a for _, a in points], "o-", where="post", label=label)
    ax.set_xlabel(f"{norm} radius")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(Path(path), lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"), "wb")
    plt.close(fig)
