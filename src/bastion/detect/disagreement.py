"""When training-data scanners disagree: one method sees a separated group in a class, another does not.

Activation clustering, spectral signatures and the label-noise scan look at the same data through
different statistics (several directions vs. one, penultimate vs. convolutional features, labels vs.
activations). A class that one of them reports and another, having scanned it, calls clean is worth a
finding of its own: either one method is blind to this poison (its layer, its direction) or the other
reacts to a genuine clean subpopulation. Either way the user should look, rather than trust whichever
scanner ran last. Two methods that both report a class but flag mostly different samples disagree too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.detect.data_scan import DataScanResult
from bastion.errors import DataError

__all__ = ["Disagreement", "scan_disagreement"]


@dataclass(frozen=True)
class Disagreement:
    """Class ``label``: the scans named in ``flagged_by`` report a separated group, those in ``quiet``
    scanned the class and found none (``kind="one-sided"``); or all report it but the flagged samples
    overlap in only ``overlap`` of their union (``kind="different-groups"``, ``quiet`` empty).

    ``statistics`` maps each compared scan to its statistic for the class (None: not scanned) and its
    threshold, ``(statistic, threshold)``.
    """

    label: int
    kind: str
    flagged_by: tuple[str, ...]
    quiet: tuple[str, ...]
    statistics: tuple[tuple[str, float | None, float], ...]
    overlap: float | None = None

    @property
    def message(self) -> str:
        """One sentence for a report."""
        stats = ", ".join(
            f"{name} {'not scanned' if s is None else f'{s:.3g}'} (threshold {t:.3g})"
            for name, s, t in self.statistics
        )
        if self.kind == "one-sided":
            return (
                f"class {self.label}: {', '.join(self.flagged_by)} find(s) a separated group that "
                f"{', '.join(self.quiet)} do(es) not ({stats}); inspect the flagged samples"
            )
        share = 0.0 if self.overlap is None else self.overlap
        return (
            f"class {self.label}: {', '.join(self.flagged_by)} flag different samples (overlap "
            f"{share:.0%} of their union; {stats}); inspect both groups"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "flagged_by": list(self.flagged_by),
            "quiet": list(self.quiet),
            "statistics": [{"method": n, "statistic": s, "threshold": t} for n, s, t in self.statistics],
            "overlap": self.overlap,
            "message": self.message,
        }


def scan_disagreement(
    results: Mapping[str, DataScanResult], *, min_overlap: float = 0.5
) -> list[Disagreement]:
    """Where the scans in ``results`` (name -> result, all of the same N samples) disagree, by class.

    Only scans that look for the same thing are compared (``finding``: a label-noise scan is not
    expected to see a backdoor); a class a scan skipped (too small) counts neither way. Two scans that
    both report a class disagree when their flagged samples overlap in less than ``min_overlap`` of
    their union (Jaccard). Returns the disagreements sorted by (finding, label); empty when they agree
    or fewer than two scans cover a class. Pure: nothing is recomputed.
    """
    if not isinstance(results, Mapping) or not all(isinstance(r, DataScanResult) for r in results.values()):
        raise DataError("scan_disagreement takes a mapping of names to DataScanResult")
    if not 0.0 <= float(min_overlap) <= 1.0:
        raise DataError(f"min_overlap is a share in [0, 1], got {min_overlap!r}")
    sizes = {len(r) for r in results.values()}
    if len(sizes) > 1:
        raise DataError(
            f"the scans covered different numbers of samples ({sorted(sizes)}); scan the same data"
        )
    out: list[Disagreement] = []
    for finding in sorted({r.finding for r in results.values()}):
        group = {name: r for name, r in results.items() if r.finding == finding}
        labels = sorted({c.label for r in group.values() for c in r.classes})
        for label in labels:
            scanned = {
                name: cls
                for name, r in group.items()
                for cls in r.classes
                if cls.label == label and cls.statistic is not None
            }
            if len(scanned) < 2:
                continue
            stats = tuple((n, c.statistic, group[n].threshold) for n, c in scanned.items())
            flagged_by = tuple(n for n, c in scanned.items() if c.suspicious)
            quiet = tuple(n for n, c in scanned.items() if not c.suspicious)
            if flagged_by and quiet:
                out.append(Disagreement(label, "one-sided", flagged_by, quiet, stats))
            elif flagged_by:
                masks = [group[n].flagged for n in flagged_by]
                union = masks[0].clone()
                common = masks[0].clone()
                for m in masks[1:]:
                    union |= m
                    common &= m
                share = int(common.sum()) / max(int(union.sum()), 1)
                if share < min_overlap:
                    out.append(Disagreement(label, "different-groups", flagged_by, (), stats, share))
    return out
