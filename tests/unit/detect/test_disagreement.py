"""scan_disagreement: which classes one scanner reports and another, having scanned them, does not."""

from __future__ import annotations

import pytest
import torch

from bastion.detect import ClassScan, DataScanResult, scan_disagreement
from bastion.errors import DataError


def _result(
    method: str, flags: dict[int, list[int]], *, skipped: tuple[int, ...] = (), finding: str = "poisoning"
):
    """Three classes of four samples (labels 0,0,0,0,1,1,1,1,2,...); ``flags`` maps a suspicious class to
    the indices flagged in it; classes in ``skipped`` were not scanned."""
    flagged = torch.zeros(12, dtype=torch.bool)
    classes = []
    for c in range(3):
        hit = flags.get(c, [])
        flagged[hit] = True
        stat = None if c in skipped else (12.0 if c in flags else 2.0)
        classes.append(ClassScan(c, 4, len(hit), stat, c in flags))
    return DataScanResult(
        method, torch.zeros(12, dtype=torch.float64), flagged, tuple(classes), 10.0, finding=finding
    )


def test_agreeing_scans_give_nothing() -> None:
    same = {"ac": _result("ac", {1: [4, 5]}), "spectral": _result("spectral", {1: [4, 5]})}
    assert scan_disagreement(same) == []
    assert scan_disagreement({"ac": _result("ac", {})}) == []  # one scan cannot disagree


def test_one_sided_report_names_who_sees_what() -> None:
    found = scan_disagreement({"ac": _result("ac", {1: [4, 5]}), "spectral": _result("spectral", {})})
    assert len(found) == 1
    d = found[0]
    assert (d.label, d.kind, d.flagged_by, d.quiet) == (1, "one-sided", ("ac",), ("spectral",))
    assert dict((n, s) for n, s, _ in d.statistics) == {"ac": 12.0, "spectral": 2.0}
    assert "class 1: ac find(s) a separated group that spectral do(es) not" in d.message
    assert d.to_dict()["kind"] == "one-sided" and d.to_dict()["message"] == d.message


def test_a_skipped_class_counts_neither_way() -> None:
    results = {"ac": _result("ac", {1: [4, 5]}), "spectral": _result("spectral", {}, skipped=(1,))}
    assert scan_disagreement(results) == []


def test_both_report_the_class_but_flag_different_samples() -> None:
    results = {"ac": _result("ac", {2: [8, 9]}), "spectral": _result("spectral", {2: [10, 11]})}
    (d,) = scan_disagreement(results)
    assert d.kind == "different-groups" and d.overlap == 0.0 and d.quiet == ()
    # Half of the union shared: at the default min_overlap 0.5 that counts as agreement.
    overlap = {"ac": _result("ac", {2: [8, 9, 10]}), "spectral": _result("spectral", {2: [9, 10, 11]})}
    assert scan_disagreement(overlap) == []
    assert scan_disagreement(overlap, min_overlap=0.6)[0].overlap == pytest.approx(0.5)


def test_only_scans_for_the_same_finding_are_compared() -> None:
    results = {"ac": _result("ac", {1: [4]}), "noise": _result("label-noise", {}, finding="label noise")}
    assert scan_disagreement(results) == []


def test_malformed_input_is_refused() -> None:
    short = DataScanResult(
        "x",
        torch.zeros(4, dtype=torch.float64),
        torch.zeros(4, dtype=torch.bool),
        (ClassScan(0, 4, 0, 1.0, False),),
        10.0,
    )
    with pytest.raises(DataError, match="different numbers of samples"):
        scan_disagreement({"ac": _result("ac", {}), "short": short})
    with pytest.raises(DataError, match="DataScanResult"):
        scan_disagreement({"ac": "not a result"})  # type: ignore[dict-item]
    with pytest.raises(DataError, match="min_overlap"):
        scan_disagreement({"ac": _result("ac", {})}, min_overlap=2.0)
