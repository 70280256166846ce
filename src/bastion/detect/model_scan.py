"""What a backdoor model scan returns: per-class reversed triggers, the MAD outlier test, a PNG of them.

The outlier test is Wang et al.'s (Neural Cleanse, IEEE S&P 2019): a backdoor target needs a much
smaller trigger than any other class, so its trigger norm is an outlier *below* the median of the
per-class norms. With ``MAD = median(|l1 - median(l1)|)``, the anomaly index of class k is
``|l1_k - median| / (1.4826 * MAD)`` (1.4826 makes MAD a consistent estimator of the standard
deviation of normal data); a class is flagged when its norm is below the median and its index exceeds
the threshold (Wang et al.'s 2.0: a normal draw falls two deviations below its median with
probability 2.3%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bastion._files import atomic_write
from bastion.errors import DetectorError

__all__ = ["MAD_CONSISTENCY", "ModelScanResult", "anomaly_index", "flag_outliers", "save_trigger_images"]

MAD_CONSISTENCY = 1.4826


def anomaly_index(norms: torch.Tensor) -> torch.Tensor:
    """``|norms - median| / (1.4826 * MAD)`` (K,), float64; the median of an even count is the mean of
    the two middle values. Where MAD is 0, classes at the median get 0 and the others ``inf``."""
    v = torch.as_tensor(norms).detach().to("cpu", torch.float64)
    if v.dim() != 1 or v.numel() < 2 or not bool(torch.isfinite(v).all()):
        raise DetectorError(f"anomaly_index needs 2 or more finite norms (K,), got shape {tuple(v.shape)}")
    dev = (v - v.quantile(0.5)).abs()
    mad = MAD_CONSISTENCY * dev.quantile(0.5)
    return torch.where(dev == 0, torch.zeros_like(dev), dev / mad)


def flag_outliers(norms: torch.Tensor, threshold: float = 2.0) -> tuple[int, ...]:
    """Classes whose norm is below the median with an anomaly index above ``threshold``, most
    anomalous first. Only the low side counts: a class that needs a *larger* trigger is no backdoor."""
    v = torch.as_tensor(norms).detach().to("cpu", torch.float64)
    index = anomaly_index(v)
    below = v < v.quantile(0.5)
    order = torch.argsort(index, descending=True, stable=True).tolist()
    return tuple(c for c in order if bool(below[c]) and float(index[c]) > threshold)


@dataclass(frozen=True)
class ModelScanResult:
    """A backdoor scan of a K-class image model.

    - ``mask`` (K, 1, H, W) in [0, 1] and ``pattern`` (K, C, H, W) inside ``bounds``: the smallest
      trigger found per target class; stamping ``(1 - mask) * x + mask * pattern`` sends inputs to it.
    - ``mask_l1`` (K,): the trigger's size (sum of the mask); ``attack_success`` (K,): the share of the
      scan's clean inputs the trigger sends to the class (below the success threshold when the scan
      found no trigger that reached it: then the last one is reported).
    - ``anomaly_index`` (K,): :func:`anomaly_index` of ``mask_l1``; ``flagged``: classes whose norm is
      below the median with an index above ``threshold``, most anomalous first.
    """

    method: str
    mask: torch.Tensor
    pattern: torch.Tensor
    mask_l1: torch.Tensor
    attack_success: torch.Tensor
    anomaly_index: torch.Tensor
    flagged: tuple[int, ...]
    threshold: float
    bounds: tuple[float, float]
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = int(self.mask_l1.shape[0])
        if self.mask.dim() != 4 or self.mask.shape[:2] != (k, 1):
            raise DetectorError(f"mask must have shape ({k}, 1, H, W), got {tuple(self.mask.shape)}")
        if (
            self.pattern.dim() != 4
            or self.pattern.shape[0] != k
            or self.pattern.shape[2:] != self.mask.shape[2:]
        ):
            raise DetectorError(f"pattern must have shape ({k}, C, H, W), got {tuple(self.pattern.shape)}")
        for name in ("attack_success", "anomaly_index"):
            if tuple(getattr(self, name).shape) != (k,):
                raise DetectorError(f"{name} must have shape ({k},), got {tuple(getattr(self, name).shape)}")
        if any(not 0 <= c < k for c in self.flagged):
            raise DetectorError(f"flagged classes {self.flagged} must lie in [0, {k})")

    @property
    def num_classes(self) -> int:
        return int(self.mask_l1.shape[0])

    @property
    def suspected(self) -> bool:
        """True when some class stands out: a backdoor is suspected."""
        return bool(self.flagged)

    @property
    def trigger(self) -> torch.Tensor:
        """What the trigger adds where it is stamped, ``mask * pattern`` (K, C, H, W)."""
        return self.mask * self.pattern

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: per-class numbers, flagged classes, parameters (no tensors)."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "flagged": list(self.flagged),
            "suspected": self.suspected,
            "seconds": round(self.seconds, 3),
            "params": self.params,
            "classes": [
                {
                    "class": k,
                    "mask_l1": float(self.mask_l1[k]),
                    "attack_success": float(self.attack_success[k]),
                    # Where MAD is 0 the index is infinite; a large finite number keeps the JSON valid.
                    "anomaly_index": min(float(self.anomaly_index[k]), 1e9),
                    "flagged": k in self.flagged,
                }
                for k in range(self.num_classes)
            ],
        }


def save_trigger_images(
    result: ModelScanResult, path: str | Path, *, class_names: Sequence[str] | None = None
) -> Path:
    """Write a PNG grid of each class's reversed trigger ``mask * pattern``, flagged classes marked in
    red in their titles; atomically (a reader never sees half a file). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; harmless when a backend is already set up
    import matplotlib.pyplot as plt

    k = result.num_classes
    names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
    if len(names) != k:
        raise DetectorError(f"{len(names)} class names for a scan of {k} classes")
    low, high = result.bounds
    # Mask-weighted offset above the lowest value: what the trigger paints, scaled to [0, 1] for display.
    shown = (result.mask * (result.pattern - low) / (high - low)).clamp(0, 1).detach().cpu()
    cols = min(k, 5)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for c in range(k):
        ax = axes.flat[c]
        img = shown[c].permute(1, 2, 0).numpy() if shown.shape[1] == 3 else shown[c].mean(0).numpy()
        ax.imshow(img, cmap=None if shown.shape[1] == 3 else "gray", vmin=0, vmax=1)
        flagged = c in result.flagged
        ax.set_title(
            f"{names[c]}{' FLAGGED' if flagged else ''}\nL1 {float(result.mask_l1[c]):.1f}, "
            f"AI {float(result.anomaly_index[c]):.1f}",
            fontsize=8,
            color="red" if flagged else "black",
        )
    fig.suptitle(f"{result.method}: reversed triggers (mask x pattern)", fontsize=9)
    fig.tight_layout()
    target = Path(path).expanduser()
    try:
        atomic_write(target, lambda fh: fig.savefig(fh, format="png", dpi=100), "wb")
    finally:
        plt.close(fig)
    return target
