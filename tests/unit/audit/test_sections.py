"""The audit as a pipeline of sections: the contract every section keeps, a section added from outside,
the pipeline's validation, the schema's assembly, and BA210 (cross-entropy gradients vanish)."""

from __future__ import annotations

import json
import runpy
import sys
import warnings
from dataclasses import replace
from importlib import resources
from typing import Any, ClassVar

import jsonschema
import pytest
import torch
from torch import nn

from bastion.audit import AuditConfig, run_audit
from bastion.audit.findings import finding
from bastion.audit.render import render_html
from bastion.audit.schema import MODALITIES, report_schema, schema_for_report
from bastion.audit.sections import (
    SECTIONS,
    AuditContext,
    Section,
    SectionError,
    SectionResult,
    check,
    validate_pipeline,
)
from bastion.data.dataset import Dataset
from bastion.model import TorchClassifier

FAST = AuditConfig(
    threats=(("linf", 0.1),), preset="fast", limit=40, check_samples=20, noise_draws=10, curve=False
)


@pytest.fixture()
def digits_test(digits_data) -> Dataset:
    _, _, x, y = digits_data
    return Dataset(x, y, num_classes=10, name="digits-test")


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.name)
def test_every_section_keeps_the_contract(section):
    fragment = section.schema()
    assert set(fragment) <= {"property", "defs"} and "property" in fragment
    jsonschema.Draft202012Validator.check_schema(fragment["property"])
    if section.template is not None:
        partial = resources.files("bastion.audit").joinpath("templates", "sections", section.template)
        assert partial.is_file(), f"{section.name}: its HTML partial {section.template} is missing"
    provided = {p for s in SECTIONS[: SECTIONS.index(section)] for p in s.provides}
    assert set(section.requires) <= provided, f"{section.name} reads outputs no earlier section provides"


@pytest.mark.parametrize("modality", sorted(MODALITIES))
def test_the_assembled_schema_is_valid_and_names_every_section(modality):
    schema = report_schema(modality=modality)
    jsonschema.Draft202012Validator.check_schema(schema)
    pipeline = MODALITIES[modality]
    assert {s.name for s in pipeline} <= set(schema["properties"])
    assert {s.name for s in pipeline if s.required_key} <= set(schema["required"])
    assert schema_for_report({"model": {"modality": modality}}) == schema


def _run_schema_module(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``python -m bastion.audit.schema ARGS`` in this process (runpy runs the module as ``-m`` does):
    exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["bastion.audit.schema", *args])
    code = 0
    try:
        with warnings.catch_warnings():
            # the package imported the module already; runpy says so and runs a fresh copy, as -m would
            warnings.filterwarnings("ignore", "'bastion.audit.schema' found in sys.modules", RuntimeWarning)
            runpy.run_module("bastion.audit.schema", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # sys.exit("message"): printed on stderr, exit code 1
            print(exc.code, file=sys.stderr)
            code = 1
        else:
            code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_schema_module_prints_each_modality_and_refuses_others(monkeypatch, capsys):
    code, printed, _ = _run_schema_module(monkeypatch, capsys, "tabular")
    assert code == 0
    assert json.loads(printed) == report_schema(modality="tabular")
    assert "tabular" in json.loads(printed)["properties"]
    code, _, stderr = _run_schema_module(monkeypatch, capsys, "audio")
    assert code == 1 and "audio" in stderr and "image, text, tabular" in stderr
    with pytest.raises(SectionError, match="audio"):
        report_schema(modality="audio")


class _Toy(Section):
    """A section from outside the package: counts the inputs the first threat's attacks fooled."""

    name = "toy"
    requires = ("adversarials",)
    provides = ("toy_count",)
    ran: ClassVar[list[AuditConfig]] = []

    def enabled(self, config: AuditConfig) -> bool:
        return config.limit is not None

    def run(self, ctx: AuditContext) -> SectionResult:
        fooled = int(ctx.output("adversarials")[0].fooled.sum())
        found = finding("BA301", f"toy: {fooled} fooled", threat="toy")
        return SectionResult(
            {"fooled": fooled},
            (found,),
            (check("BA301", "toy", False, fooled=fooled),),
            {"toy_count": fooled},
        )

    def schema(self) -> dict[str, Any]:
        return {"property": {"type": "object", "required": ["fooled"]}}


class _Reader(Section):
    name = "reader"
    requires = ("toy_count",)

    def run(self, ctx: AuditContext) -> SectionResult:
        return SectionResult({"seen": ctx.output("toy_count")})

    def schema(self) -> dict[str, Any]:
        return {"property": {"type": "object"}}


def test_a_new_section_is_one_class_and_one_entry(digits_model, digits_test):
    pipeline = (*SECTIONS, _Toy(), _Reader())
    report = run_audit(digits_model, digits_test, FAST, sections=pipeline)
    data = report.to_dict()
    jsonschema.validate(data, report_schema(pipeline))
    fooled = int(sum(s["n_fooled"] for s in data["threats"][0]["stages"] if s["kind"] != "check"))
    assert data["toy"] == {"fooled": fooled} and data["reader"] == {"seen": fooled}
    assert data["sections"][-2:] == ["toy", "reader"]
    assert any(f["threat"] == "toy" for f in data["findings"]) and not report.passed
    assert {"code": "BA301", "threat": "toy", "passed": False, "measured": {"fooled": fooled}} in data[
        "checks"
    ]
    assert "Red-team audit" in render_html(report)  # a section without a partial renders nothing of its own


def test_a_disabled_section_gives_its_off_block_and_its_readers_none(digits_model, digits_test):
    pipeline = (*SECTIONS, _Toy(), _Reader())
    report = run_audit(digits_model, digits_test, replace(FAST, limit=None), sections=pipeline)
    assert report.to_dict()["toy"] is None and report.to_dict()["reader"] == {"seen": None}


def test_the_pipeline_is_validated_before_anything_runs():
    with pytest.raises(SectionError, match="requires 'toy_count'"):
        validate_pipeline((*SECTIONS, _Reader()))
    with pytest.raises(SectionError, match="two sections are named 'toy'"):
        validate_pipeline((*SECTIONS, _Toy(), _Toy()))
    with pytest.raises(SectionError, match="requires 'adversarials'"):
        validate_pipeline((_Toy(), *SECTIONS))


def test_an_undeclared_output_is_an_error_naming_it(digits_model, digits_test):
    class Sneaky(_Reader):
        name = "sneaky"
        requires = ()

        def run(self, ctx: AuditContext) -> SectionResult:
            return SectionResult(ctx.output("nothing-declares-this"))

    with pytest.raises(KeyError, match="nothing-declares-this"):
        run_audit(digits_model, digits_test, FAST, sections=(*SECTIONS, Sneaky()))


def test_a_section_cannot_replace_a_core_key():
    class Clean(_Reader):
        name = "clean"
        requires = ()

    with pytest.raises(SectionError, match="core key"):
        report_schema((*SECTIONS, Clean()))


class _Scaled(nn.Module):
    """Logits multiplied by a large temperature: cross-entropy's gradient is exactly zero in float32
    at confidently classified inputs; the margin (and DLR) are unchanged up to scale."""

    def __init__(self, net: nn.Module, scale: float) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.net(x)


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_vanishing_cross_entropy_is_a_finding(digits_mlp_module, digits_test, scale):
    model = TorchClassifier(_Scaled(digits_mlp_module, scale), num_classes=10, name=f"x{scale:g}")
    report = run_audit(model, digits_test, replace(FAST, threats=(("linf", 0.2),)))
    codes = [f["code"] for f in report.findings]
    (ran,) = [c for c in report.checks if c["code"] == "BA210"]
    stages = {s["attack"]: s["n_fooled"] for s in report.threats[0]["stages"] if s["kind"] == "white-box"}
    if scale == 1.0:
        assert "BA210" not in codes and ran["passed"], ran
        assert stages["apgd-ce"] > stages["apgd-t"]
    else:
        assert "BA210" in codes and not ran["passed"], ran
        assert stages["apgd-ce"] <= 0.1 * stages["apgd-t"] and stages["apgd-t"] > 0
        # The headline stays right: the scale-invariant stages break what cross-entropy cannot.
        assert report.threats[0]["robust_accuracy"] < 0.5


def test_the_standard_presets_focused_stages_run_in_the_audit(digits_model, digits_test):
    """`standard`'s later stages attack only the survivors nearest the boundary; in the audit they run
    ranked by the margin earlier stages reached, BA205 keeps a Square on every survivor, and a focused
    Square with the same settings is not run twice."""
    cfg = replace(FAST, preset="standard", limit=30, threats=(("linf", 0.15),))
    report = run_audit(digits_model, digits_test, cfg)
    rows = report.threats[0]["stages"]
    white = [s for s in rows if s["kind"] == "white-box"]
    probes = [s for s in rows if s["kind"] == "black-box"]
    assert [s["attack"] for s in white] == ["apgd-ce", "apgd-t", "apgd-t-9"]
    survivors = white[1]["n_attacked"] - white[1]["n_fooled"]
    assert white[2]["n_attacked"] == min(survivors, max(-(-survivors // 5), 10))  # its fifth, at least 10
    names = [s["attack"] for s in probes]
    assert names.count("square") == 1 and "square-5000" in names
    square = next(s for s in probes if s["attack"] == "square")
    assert square["n_attacked"] == survivors - white[2]["n_fooled"]  # every white-box survivor
    assert [c["code"] for c in report.checks].count("BA205") == 1
    doubled = [s["attack"] for s in rows if s["kind"] == "check" and s["attack"].endswith("×2")]
    assert doubled == ["apgd-ce ×2", "apgd-t ×2"]  # the focused stage is the extra effort already


def test_the_html_report_escapes_what_it_prints(digits_model, digits_test):
    # A model or data name is the user's text: it must never become markup in a reviewer's browser.
    report = run_audit(digits_model, digits_test, FAST, model_name="<script>alert(1)</script>")
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
