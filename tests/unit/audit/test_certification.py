"""Certification in the audit: IBP's lower bound beside the attacks' number, smoothing for l2 threats,
refusals recorded rather than raised, and the config's certify options."""

from dataclasses import replace

import jsonschema
import pytest
import torch
from torch import nn

from bastion.audit import AuditConfig, ConfigError, load_config, run_audit, write_report
from bastion.audit.certification import audit_certification
from bastion.audit.schema import report_schema
from bastion.data.dataset import Dataset
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

SCHEMA = report_schema()
QUICK = AuditConfig(preset="fast", limit=40, checks=False, curve=False, examples=0)


@pytest.fixture()
def digits_test(digits_data) -> Dataset:
    _, _, x, y = digits_data
    return Dataset(x, y, num_classes=10, name="digits-test")


def _quiet(task: str, done: int, total: int) -> None:
    return None


class Wrapped(nn.Module):
    """The digits MLP behind a custom forward: a network IBP cannot follow layer by layer."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_ibp_is_a_lower_bound_on_the_attacks(digits_model, digits_test, tmp_path):
    cfg = replace(QUICK, threats=(("linf", 0.01), ("linf", 0.03), ("l2", 0.5)), certify="ibp")
    report = run_audit(digits_model, digits_test, cfg)
    jsonschema.validate(report.to_dict(), SCHEMA)
    cert = report.certification
    assert cert is not None and cert["method"] == "ibp" and cert["refused"] is None and cert["note"] is None
    small, large, l2 = cert["threats"]
    for row, threat in ((small, report.threats[0]), (large, report.threats[1])):
        assert row["status"] == "measured" and row["params"]["epsilon"] == threat["epsilon"]
        assert row["certified_broken"] == 0 and row["abstentions"] == 0
        assert 0.0 < row["certified_accuracy"] <= threat["robust_accuracy"] == row["robust_accuracy"]
    assert large["certified_accuracy"] <= small["certified_accuracy"]
    assert large["certified_accuracy"] < large["robust_accuracy"]  # an untrained-for-IBP model: a real gap
    assert l2["status"] == "not applicable" and "linf" in l2["note"]
    assert [c["passed"] for c in report.checks if c["code"] == "BA209"] == [True, True]
    write_report(report, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "Certified robustness" in html and "the truth lies between" in html
    assert "the truth lies between" in (tmp_path / "summary.md").read_text()


def test_smoothing_certifies_l2_threats_once(digits_model, digits_test, tmp_path):
    cfg = replace(
        QUICK, threats=(("l2", 0.1), ("l2", 0.25), ("linf", 0.05)), certify="smoothing:0.25", certify_n=300
    )
    report = run_audit(digits_model, digits_test, cfg)
    jsonschema.validate(report.to_dict(), SCHEMA)
    cert = report.certification
    assert cert["method"] == "smoothing" and cert["params"]["n_estimate"] == 300
    small, large, linf = cert["threats"]
    for row in (small, large):
        assert row["status"] == "measured" and row["certified_broken"] is None  # the smoothed classifier
        assert 0 <= row["abstentions"] <= 40 and 0.0 <= row["certified_accuracy"] <= row["clean_accuracy"]
    assert large["certified_accuracy"] <= small["certified_accuracy"] and small["n_certified"] > 0
    assert small["seconds"] == large["seconds"] == cert["seconds"]  # one certificate serves both radii
    assert linf["status"] == "not applicable"
    assert not any(c["code"] == "BA209" for c in report.checks)
    write_report(report, tmp_path)
    assert "smoothed classifier" in (tmp_path / "report.html").read_text()


def test_ibp_refusal_is_recorded_not_raised(digits_mlp_module, digits_test, tmp_path):
    model = TorchClassifier(Wrapped(digits_mlp_module), bounds=(0.0, 1.0), num_classes=10)
    cfg = replace(QUICK, threats=(("linf", 0.05), ("linf", 0.1)), limit=20, certify="ibp")
    report = run_audit(model, digits_test, cfg)
    jsonschema.validate(report.to_dict(), SCHEMA)
    cert = report.certification
    assert "IBP cannot bound" in cert["refused"] and "nn.Sequential" in cert["refused"]
    assert [row["status"] for row in cert["threats"]] == ["refused", "refused"]
    assert report.passed and report.threats[0]["robust_accuracy"] >= 0
    write_report(report, tmp_path)
    assert "refused this model" in (tmp_path / "report.html").read_text()


def test_ibp_refuses_a_model_behind_a_defense(digits_model, digits_test):
    from bastion.defenses import DefendedClassifier, parse_defense

    defended = DefendedClassifier(digits_model, parse_defense("bits:4"), mode="naive")
    x, y = digits_test.x[:10], digits_test.y[:10]
    threat = ThreatModel("linf", 0.05, bounds=(0.0, 1.0))
    cfg = replace(QUICK, certify="ibp")
    block, findings, _ = audit_certification(defended, x, y, [(threat, 0.5, y < 0)], cfg, _quiet)
    assert "network itself" in block["refused"] and findings == []


def test_no_matching_threat_and_a_broken_certificate_are_reported(digits_model, digits_test):
    x, y = digits_test.x[:20], digits_test.y[:20]
    linf = ThreatModel("linf", 0.001, bounds=(0.0, 1.0))
    fooled = torch.ones(20, dtype=torch.bool)  # as if the attacks had broken every input
    cfg = replace(QUICK, certify="smoothing:0.25")
    block, findings, ran = audit_certification(digits_model, x, y, [(linf, 0.0, fooled)], cfg, _quiet)
    assert block["note"].startswith("nothing was certified") and "l2" in block["note"]
    assert findings == [] and ran == []
    block, findings, ran = audit_certification(
        digits_model, x, y, [(linf, 0.0, fooled)], replace(cfg, certify="ibp"), _quiet
    )
    broken = block["threats"][0]["certified_broken"]
    assert broken == block["threats"][0]["n_certified"] > 0
    assert [f.code for f in findings] == ["BA209"]
    assert [(c["code"], c["passed"]) for c in ran] == [("BA211", True), ("BA209", False)]


def test_blocked_audit_says_certification_did_not_run(digits_model, digits_test):
    outside = Dataset(digits_test.x[:10] * 2, digits_test.y[:10], num_classes=10, name="scaled")
    report = run_audit(digits_model, outside, replace(QUICK, certify="ibp"))
    assert report.verdict["blocked"] and "not run" in report.certification["note"]
    jsonschema.validate(report.to_dict(), SCHEMA)


def test_no_certification_by_default(digits_model, digits_test):
    assert AuditConfig().certify is None
    assert "certification" in SCHEMA["properties"] and "certification" not in SCHEMA["required"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"certify": "crown"}, "unknown certification method 'crown'; use ibp"),
        ({"certify": "smoothing"}, "needs the noise level"),
        ({"certify": "smoothing:-0.5"}, "sigma must be a finite number > 0"),
        ({"certify": "smoothing:wide"}, "sigma must be a finite number > 0"),
        ({"certify": "ibp:0.1"}, "ibp takes no parameter"),
        ({"certify": 0.25}, "certify must be a string"),
        ({"certify": "smoothing:0.25", "certify_n": 0}, "certify_n must be a positive integer"),
        ({"certify": "smoothing:0.25", "certify_n": 5}, "can never certify .* at least 10"),
        ({"certify_alpha": 0.5}, "certify_alpha must lie in"),
    ],
)
def test_bad_certify_options_are_refused_with_the_reason(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AuditConfig(**kwargs)


def test_certify_spec_is_normalised_and_read_from_toml(tmp_path):
    assert AuditConfig(certify=" Smoothing:0.50 ").certify == "smoothing:0.5"
    assert AuditConfig(certify="IBP", certify_n=5).certify == "ibp"  # n only matters to smoothing
    path = tmp_path / "audit.toml"
    path.write_text('certify = "smoothing:0.25"\ncertify_n = 2000\ncertify_alpha = 0.01\n')
    cfg = load_config(path)
    assert (cfg.certify, cfg.certify_n, cfg.certify_alpha) == ("smoothing:0.25", 2000, 0.01)
    assert cfg.to_dict()["certify"] == "smoothing:0.25"


def test_what_only_the_self_check_catches_is_a_finding(digits_mlp_module, digits_test, monkeypatch):
    """A forward hook that shifts a logit, with IBP's hook rule switched off: the structure looks
    plain, the run-time check sees outputs outside the bounds, and the audit raises BA211."""
    import copy

    from bastion.certify import _ibp_rules as rules

    monkeypatch.setattr(rules, "_check_hooks", lambda module, where: None)
    net = copy.deepcopy(digits_mlp_module)
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    last.register_forward_hook(lambda module, inputs, out: out + torch.arange(10.0))
    model = TorchClassifier(net, num_classes=10)
    report = run_audit(model, digits_test, replace(QUICK, threats=(("linf", 0.01),), certify="ibp"))
    (row,) = report.certification["threats"]
    assert row["status"] == "refused" and row["note"].startswith("the network computes something")
    assert [f["code"] for f in report.findings] == ["BA211"] and not report.passed
    assert {"code": "BA211", "threat": "linf ε=0.01", "passed": False, "measured": {}} in report.checks


def test_a_sound_network_passes_the_self_check(digits_model, digits_test):
    report = run_audit(digits_model, digits_test, replace(QUICK, threats=(("linf", 0.01),), certify="ibp"))
    assert [c["passed"] for c in report.checks if c["code"] == "BA211"] == [True]
