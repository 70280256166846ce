"""``compare_reports``: accuracies, certificates and findings between two audit reports."""

from __future__ import annotations

import copy

from bastion.audit.compare import compare_reports


def _report(robust: float, certified: float | None, method: str = "ibp") -> dict:
    threat = {"label": "linf ε=0.1", "robust_accuracy": robust, "naive_robust_accuracy": robust + 0.01}
    cert = None
    if certified is not None:
        cert = {
            "method": method,
            "threats": [
                {"label": "linf ε=0.1", "status": "measured", "certified_accuracy": certified},
                {"label": "linf ε=0.3", "status": "refused", "note": "over budget"},
            ],
        }
    return {
        "clean": {"accuracy": 0.99},
        "threats": [threat],
        "certification": cert,
        "findings": [],
        "verdict": {"passed": True},
    }


def _rows(cmp) -> dict:
    return {m: (o, n, d) for m, o, n, d in cmp.metrics}


def test_certified_accuracy_is_compared_and_a_drop_is_a_regression():
    old, new = _report(0.6, 0.5), _report(0.6, 0.4)
    cmp = compare_reports(old, new)
    o, n, d = _rows(cmp)["certified (ibp) linf ε=0.1"]
    assert (o, n) == (0.5, 0.4) and abs(d + 0.1) < 1e-12
    assert "certified (ibp) linf ε=0.3" not in _rows(cmp)  # refused: nothing measured to compare
    assert cmp.regressed() and not cmp.regressed(tolerance=0.15)
    assert not compare_reports(new, old).regressed()


def test_certificates_of_different_kinds_are_not_compared():
    cmp = compare_reports(_report(0.6, 0.5, "ibp"), _report(0.6, 0.9, "smoothing"))
    rows = _rows(cmp)
    assert rows["certified (ibp) linf ε=0.1"] == (0.5, None, None)
    assert rows["certified (smoothing) linf ε=0.1"] == (None, 0.9, None)
    assert not cmp.regressed()


def test_reports_without_certification_still_compare():
    old = _report(0.6, None)
    del old["certification"]  # schema 1.0 reports have no such key
    cmp = compare_reports(old, _report(0.5, None))
    assert not any(m.startswith("certified") for m, *_ in cmp.metrics)
    assert cmp.regressed()  # the robust accuracy fell


def test_training_threat_findings_show_as_new_and_resolved():
    old, new = _report(0.6, None), _report(0.6, None)
    finding = {"code": "BA401", "threat": None, "title": "backdoor suspected"}
    new["findings"] = [copy.deepcopy(finding)]
    cmp = compare_reports(old, new)
    assert [f["code"] for f in cmp.new_findings] == ["BA401"] and cmp.regressed()
    back = compare_reports(new, old)
    assert [f["code"] for f in back.resolved_findings] == ["BA401"] and not back.regressed()


def test_metrics_come_section_by_section():
    cmp = compare_reports(_report(0.6, 0.5), _report(0.5, 0.5))
    origin = {row["metric"]: row["section"] for row in cmp.to_dict()["metrics"]}
    assert origin["clean accuracy"] == "clean"
    assert origin["robust linf ε=0.1"] == origin["white-box only linf ε=0.1"] == "threats"
    assert origin["certified (ibp) linf ε=0.1"] == "certification"


def test_a_custom_pipeline_compares_its_own_sections():
    from bastion.audit.sections import SECTIONS

    only_certification = [s for s in SECTIONS if s.name == "certification"]
    cmp = compare_reports(_report(0.6, 0.5), _report(0.1, 0.5), sections=only_certification)
    assert [m for m, *_ in cmp.metrics] == ["clean accuracy", "certified (ibp) linf ε=0.1"]
    assert not cmp.regressed()  # the robust accuracy fell, but no section of this pipeline compares it


def test_regressions_name_the_metric_the_finding_and_the_verdict():
    old, new = _report(0.6, None), _report(0.5, None)
    new["findings"] = [{"code": "BA201", "title": "gradient masking", "threat": "linf ε=0.1"}]
    new["verdict"] = {"passed": False}
    cmp = compare_reports(old, new)
    reasons = cmp.regressions()
    assert reasons[0] == "robust linf ε=0.1 fell 10.0 pts (60.0% -> 50.0%)"
    assert "new finding BA201 gradient masking (linf ε=0.1)" in reasons
    assert reasons[-1] == "verdict PASS -> FAIL"
    assert "clean accuracy" not in " ".join(reasons)  # unchanged metrics are not named
    assert compare_reports(old, copy.deepcopy(old)).regressions() == []
    assert cmp.regressions(tolerance=0.2)[0].startswith("new finding")  # within tolerance: not named


def test_reports_of_other_models_or_data_are_refused():
    import pytest

    from bastion.audit.compare import check_comparable, incomparable
    from bastion.errors import BastionError

    def audited(data: str, shape: list[int], sha: str) -> dict:
        report = _report(0.6, None)
        report["model"] = {"name": "model.py:build", "sha256": sha, "input_shape": shape, "num_classes": 10}
        report["data"] = {"name": data, "sha256": "ab" * 32}
        return report

    main, branch = audited("digits-test", [1, 8, 8], "1" * 64), audited("digits-test", [1, 8, 8], "2" * 64)
    assert incomparable(main, branch) == []  # new weights of the same model: what compare is for
    check_comparable(main, branch)
    cifar = audited("cifar10-test", [3, 32, 32], "2" * 64)
    assert incomparable(main, cifar) == [
        "model input shape [1, 8, 8] -> [3, 32, 32]",
        "data digits-test -> cifar10-test",
    ]
    with pytest.raises(BastionError, match="pass --force"):
        check_comparable(main, cifar)
    assert incomparable(_report(0.6, None), _report(0.5, None)) == []  # older reports without the blocks
