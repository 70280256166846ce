"""The text and tabular audit sections on toy models: the union headline, attacks that cannot run are
listed (never dropped), the sanitiser measured adaptively, the audit's own re-check of counted
adversarials (BA603), the degenerate flag (BA602), and the report they produce (schema, HTML)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jsonschema
import pytest
import torch

from bastion.audit import AuditConfig, run_audit
from bastion.audit.compare import compare_reports
from bastion.audit.render import render_html, render_summary
from bastion.audit.schema import report_schema
from bastion.audit.sections import TABULAR_SECTIONS, TEXT_SECTIONS, TabularSection, TextSection
from bastion.audit.sections.text import PRESETS, TEXT_AUDIT_ATTACKS, edit_segments
from bastion.errors import DataError
from bastion.tabular import Feature, TabularData, TabularSchema, TabularThreatModel
from bastion.text import TextData
from bastion.text.registry import PRESETS as REGISTRY_PRESETS
from bastion.text.registry import TEXT_ATTACKS


class WordScore:
    """Positive iff the text holds more exact words "good" than "bad" (a tie is negative): a model that
    reads characters as they come, so a zero-width space inside "good" or "bad" hides the word."""

    num_classes = 2

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        s = torch.tensor(
            [float(t.lower().split().count("good") - t.lower().split().count("bad")) for t in texts]
        )
        return torch.stack([-s, s], dim=1)


TEXTS = TextData(
    ("good movie", "bad good movie", "a good film", "good plot bad", "good fun"),  # a tie reads negative
    torch.tensor([1, 0, 1, 0, 1]),
    ("negative", "positive"),
    name="toy",
)
CFG = AuditConfig(limit=None)


def test_the_audit_names_every_registered_attack_and_preset() -> None:
    assert set(TEXT_AUDIT_ATTACKS) == set(TEXT_ATTACKS) and tuple(PRESETS) == tuple(REGISTRY_PRESETS)


def test_edit_segments_mark_only_the_edits() -> None:
    segs = edit_segments("a [good -> go<U+200B>od] film [x] [bad -> b]")
    assert [s["text"] for s in segs if s["edit"]] == ["[good -> go<U+200B>od]", "[bad -> b]"]
    assert "".join(s["text"] for s in segs) == "a [good -> go<U+200B>od] film [x] [bad -> b]"


def test_text_audit_union_headline_sanitiser_and_missing_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.text.registry as registry

    real = registry.make_text_attack

    def fake(name: str, preset: str = "paper", **kw: Any) -> Any:
        if name == "pwws":
            raise DataError("WordNet is missing: apt-get install -y wordnet-base && pip install nltk")
        return real(name, preset, **kw)

    monkeypatch.setattr(registry, "make_text_attack", fake)
    section = TextSection(attacks=("invisible", "homoglyph", "pwws"), presets=("paper",))
    report = run_audit(WordScore(), TEXTS, CFG, sections=(section,))
    d = report.to_dict()
    jsonschema.validate(d, report_schema((section,)))
    rows = {r["attack"]: r for r in d["text"]["attacks"]}
    assert rows["pwws"]["status"] == "not run" and "apt-get install" in rows["pwws"]["reason"]
    # zero-width spaces and look-alikes hide "good"/"bad" from this model: every text falls
    assert rows["invisible"]["success_rate"] == 1.0 and rows["homoglyph"]["success_rate"] == 1.0
    head = d["text"]["headline"]
    assert [h["label"] for h in head] == ["text/paper"] and head[0]["robust_accuracy"] == 0.0
    assert "pwws" in head[0]["note"]  # an upper bound, and it says why
    san = d["text"]["sanitiser"]
    assert all(r["success_rate_sanitised"] == 0.0 for r in san["rows"]) and len(san["rows"]) == 2
    assert san["clean_accuracy_sanitised"] == san["clean_accuracy"] == 1.0
    assert [f["code"] for f in d["findings"]] == ["BA601"]
    assert report.robust_accuracy == 0.0 and d["model"]["modality"] == "text"
    assert "text/paper" in render_summary(report) and "not run: WordNet is missing" in render_html(report)
    rows = {m: (o, n) for m, o, n, _ in compare_reports(d, d).metrics}  # report compare reads the block
    assert rows["robust text/paper"] == (0.0, 0.0) and rows["robust text/paper invisible"] == (0.0, 0.0)


def test_an_audited_model_behind_the_sanitiser_raises_no_ba601() -> None:
    from bastion.text import SanitisedTextClassifier

    section = TextSection(attacks=("invisible",), presets=("strict",))
    d = run_audit(SanitisedTextClassifier(WordScore()), TEXTS, CFG, sections=(section,)).to_dict()
    assert d["text"]["sanitiser"]["audited_model_sanitised"] is True
    assert d["text"]["attacks"][0]["success_rate"] == 0.0 and d["findings"] == []


def test_a_counted_invalid_text_edit_is_a_bug_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.text.registry as registry

    real = registry.make_text_attack

    class Tampered:  # an attack whose result claims a success its verifier rejected
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __call__(self, *args: Any, **kw: Any) -> Any:
            r = self.inner(*args, **kw)
            return dataclasses.replace(r, valid=torch.zeros_like(r.valid))

    monkeypatch.setattr(
        registry,
        "make_text_attack",
        lambda n, p="paper", **kw: (Tampered(real(n, p, **kw)[0]), real(n, p)[1]),
    )
    section = TextSection(attacks=("invisible",), presets=("paper",))
    d = run_audit(WordScore(), TEXTS, CFG, sections=(section,)).to_dict()
    bug = [f for f in d["findings"] if f["code"] == "BA603"]
    assert bug and bug[0]["evidence"]["counts"] == {"invisible/paper": 5}


SCHEMA = TabularSchema(
    features=(Feature("income", "integer", low=0, high=100, immutable=True),
              Feature("amount", "integer", low=0, high=100, max_change=10)),
    label="label", name="toy-loans",
)  # fmt: skip


class Refuses:
    """Refuses (class 1) when amount > income / 2; or always accepts (class 0) when ``constant``."""

    differentiable = False
    num_classes = 2
    schema = SCHEMA

    def __init__(self, constant: bool = False) -> None:
        self.constant = constant

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 1] - x[:, 0] / 2).float()
        s = torch.full_like(s, -1.0) if self.constant else s
        return torch.stack([-s, s], dim=1)


def _records() -> TabularData:
    g = torch.Generator().manual_seed(0)
    income = torch.randint(20, 100, (40,), generator=g).double()
    amount = torch.randint(0, 60, (40,), generator=g).double()
    y = (amount > income / 2).long()
    return TabularData(torch.stack([income, amount], 1), y, SCHEMA, ("accept", "refuse"), "toy.csv")


def test_tabular_audit_counts_only_valid_records_and_flags_a_degenerate_model() -> None:
    data = _records()
    d = run_audit(Refuses(), data, CFG, threat=TabularThreatModel(SCHEMA)).to_dict()
    jsonschema.validate(d, report_schema(TABULAR_SECTIONS))
    t = d["tabular"]
    assert t["counted_valid"] == 1.0 and t["n_counted"] > 0 and d["findings"] == []
    for e in t["examples"]:  # only the mutable feature moved, within its max_change
        assert [c["feature"] for c in e["changes"]] == ["amount"]
        assert abs(e["changes"][0]["after"] - e["changes"][0]["before"]) <= 10
    constant = run_audit(Refuses(constant=True), data, CFG).to_dict()
    assert constant["tabular"]["robustness"]["degenerate"] and constant["tabular"]["robustness"]["mcc"] == 0.0
    # a constant model is also at chance (BA108); BA602 says why its robust accuracy means nothing
    assert sorted(f["code"] for f in constant["findings"]) == ["BA108", "BA602"]


def test_a_counted_record_that_breaks_the_threat_is_a_bug_finding() -> None:
    from bastion.tabular import MoEvA

    class Cheat:  # moves the immutable income after the real attack and keeps "success"
        def __call__(self, model: Any, x: torch.Tensor, y: torch.Tensor, threat: Any, *, seed: int) -> Any:
            r = MoEvA()(model, x, y, threat, seed=seed)
            x_adv = r.x_adv.clone()
            x_adv[r.success, 0] += 1
            return dataclasses.replace(r, x_adv=x_adv)

    d = run_audit(Refuses(), _records(), CFG, sections=(TabularSection(cascade=Cheat()),)).to_dict()
    assert d["tabular"]["counted_valid"] == 0.0
    assert [f["code"] for f in d["findings"]] == ["BA603"]


def test_a_threat_over_another_schema_is_refused() -> None:
    from bastion.errors import ThreatModelError

    other = TabularSchema(features=(Feature("age", "integer", low=0, high=99),), label="label", name="x")
    with pytest.raises(ThreatModelError, match="other features"):
        run_audit(Refuses(), _records(), CFG, threat=TabularThreatModel(other))


def test_each_pipeline_has_its_schema() -> None:
    assert [s.name for s in TEXT_SECTIONS] == ["text"] and [s.name for s in TABULAR_SECTIONS] == ["tabular"]
    schema = report_schema(TABULAR_SECTIONS)
    jsonschema.Draft202012Validator.check_schema(schema)
    d = run_audit(Refuses(), _records(), CFG).to_dict()
    jsonschema.validate(d, schema)
    d["tabular"]["counted_valid"] = 1.5  # the fragment is enforced, not only present
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, schema)


def test_the_config_chooses_the_text_attacks_and_presets() -> None:
    from bastion.audit.config import ConfigError

    cfg = AuditConfig(limit=None, text_attacks="invisible", text_presets=["strict"], text_max_queries=500)
    d = run_audit(WordScore(), TEXTS, cfg).to_dict()
    assert [(r["attack"], r["preset"]) for r in d["text"]["attacks"]] == [("invisible", "strict")]
    assert d["text"]["attacks"][0]["params"]["max_queries"] == 500
    assert d["config"]["text_attacks"] == ["invisible"] and [h["label"] for h in d["text"]["headline"]] == [
        "text/strict"
    ]
    with pytest.raises(ConfigError, match="unknown text_attacks 'bert'"):
        AuditConfig(text_attacks="invisible,bert")
    with pytest.raises(ConfigError, match="text_presets names none"):
        AuditConfig(text_presets="")
