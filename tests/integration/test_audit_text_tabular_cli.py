"""``bastion audit`` on text and tabular models, end to end: the user's own model factory and CSV, a real
process, report.json against the schema, the verdict and its exit code, the HTML, one-line usage errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from cli_inproc import bastion
from test_tabular_attack_cli import loans

from bastion.audit.schema import report_schema, schema_for_report
from bastion.audit.sections import TABULAR_SECTIONS, TEXT_SECTIONS

TEXT_MODEL = """
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

POS = ["a great film", "great acting", "a wonderful story", "great and wonderful", "wonderful cast"]
NEG = ["a terrible film", "terrible acting", "an awful story", "awful and terrible", "awful cast"]


def build():
    return make_pipeline(CountVectorizer(), LogisticRegression(C=10)).fit(POS + NEG, [1] * 5 + [0] * 5)
"""

ROWS = [("a great film", 1), ("great acting and a wonderful story", 1), ("a terrible film", 0),
        ("<i>awful</i> acting", 0), ("wonderful <b>cast</b>", 1), ("terrible , awful", 0)]  # fmt: skip

TABULAR_MODEL = """
from pathlib import Path
import csv
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

def _rows():
    rows = list(csv.DictReader(open(Path(__file__).with_name("loans.csv"))))
    x = [[float(r["income"]), float(r["amount"]), float(r["age"])] for r in rows]
    return x, [int(r["label"]) for r in rows]

def build():
    return LogisticRegression().fit(*_rows())

def always_accept():  # a "robust" model: nobody is ever refused
    return DummyClassifier(strategy="constant", constant=0).fit(*_rows())
"""

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _screenshot(html: Path, tmp_path: Path) -> tuple[Path, str]:
    """Render ``html`` in headless Chromium (as test_audit_cli does): the screenshot and its stderr."""
    if CHROMIUM is None:
        if os.environ.get("BASTION_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required in CI (BASTION_REQUIRE_BROWSER is set) but is not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1200,2000", f"--screenshot={shot}", html.as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    return shot, res.stderr


def _text_files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model.py"
    model.write_text(TEXT_MODEL)
    data = tmp_path / "reviews.csv"
    data.write_text("review,label\n" + "".join(f'"{t}",{y}\n' for t, y in ROWS))
    return model, data


@pytest.fixture(scope="module")
def text_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp = tmp_path_factory.mktemp("text-audit")
    model, data = _text_files(tmp)
    res = bastion(
        "audit", f"{model}:build", f"csv:{data}", "--text-column", "review", "--label", "label",
        "--min-robust-accuracy", "0.99", "--out", str(tmp / "report"),
    )  # fmt: skip
    return res, tmp / "report"


@pytest.mark.slow
def test_text_audit_end_to_end(text_report: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    res, out = text_report
    # character tricks flip this bag-of-words model (BA601) and the gate is far above it (BA301): exit 1
    assert res.returncode == 1, res.stderr
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, schema_for_report(data))  # the report names its modality's schema
    assert schema_for_report(data) == report_schema(TEXT_SECTIONS) != report_schema()
    assert data["model"]["modality"] == "text" and data["model"]["bounds"] is None
    assert data["data"]["n_samples"] == len(ROWS) and data["clean"]["accuracy"] == 1.0
    text = data["text"]
    runs = {(r["attack"], r["preset"]): r for r in text["attacks"]}
    assert set(runs) == {(a, p) for a in ("deepwordbug", "invisible", "homoglyph", "pwws", "textfooler")
                         for p in ("paper", "strict")}  # fmt: skip
    for r in runs.values():  # every attack is there: measured, or not run with how to install what it needs
        if r["status"] == "ran":
            assert r["invalid"] >= 0 and r["robust_accuracy"] <= r["clean_accuracy"]
            assert r["success_rate"] == pytest.approx(1 - r["robust_accuracy"] / r["clean_accuracy"])
        else:
            assert "install" in r["reason"], r
    assert runs[("invisible", "paper")]["success_rate"] > 0  # the bare model falls for zero-width spaces
    # the headline per preset is the union over attacks: never above any single attack's accuracy
    heads = {h["label"]: h for h in text["headline"]}
    assert set(heads) == {"text/paper", "text/strict"}
    for preset in ("paper", "strict"):
        ran = [r["robust_accuracy"] for (a, p), r in runs.items() if p == preset and r["status"] == "ran"]
        assert heads[f"text/{preset}"]["robust_accuracy"] <= min(ran) + 1e-9
    # behind the sanitiser the character tricks flip nothing and clean accuracy does not move
    san = text["sanitiser"]
    assert {(r["attack"], r["preset"]) for r in san["rows"]} == {
        (a, p) for a in ("invisible", "homoglyph") for p in ("paper", "strict")
    }
    assert all(r["success_rate_sanitised"] == 0.0 for r in san["rows"])
    assert san["clean_accuracy_sanitised"] == san["clean_accuracy"] == 1.0
    codes = [f["code"] for f in data["findings"]]
    assert "BA601" in codes and "BA301" in codes and "BA603" not in codes
    gated = {f["threat"] for f in data["findings"] if f["code"] == "BA301"}
    assert gated <= {"text/paper", "text/strict"} and gated
    # edits shown with invisible characters as code points, highlighted and HTML-escaped
    shown = [e["shown"] for e in text["examples"]]
    assert 0 < len(shown) <= 8 and any("<U+200B>" in s for s in shown)
    html = (out / "report.html").read_text()
    assert "text/strict" in html and "&lt;U+200B&gt;" in html and "<mark>" in html
    assert any("<i>" in e["adversarial"] for e in text["examples"])  # markup in the user's text ...
    assert "<U+200B>" not in html and "<i>" not in html and "&lt;i&gt;" in html  # ... never becomes markup
    assert 'src="http' not in html and 'href="http://' not in html  # self-contained
    summary = (out / "summary.md").read_text()
    assert "text/paper" in summary and "BA601" in summary
    assert "text/strict" in res.stdout and "FAIL" in res.stdout


@pytest.mark.slow
def test_text_report_renders_in_headless_chromium(text_report, tmp_path):
    _, out = text_report
    shot, stderr = _screenshot(out / "report.html", tmp_path)
    assert shot.is_file() and shot.stat().st_size > 10_000, stderr[-2000:]
    console = [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console


def _tabular_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    data, schema = loans(tmp_path)
    model = tmp_path / "model.py"
    model.write_text(TABULAR_MODEL)
    return model, data, schema


@pytest.mark.slow
def test_tabular_audit_end_to_end(tmp_path: Path) -> None:
    model, data, schema = _tabular_files(tmp_path)
    out = tmp_path / "report"
    res = bastion(
        "audit", f"{model}:build", f"csv:{data}", "--schema", str(schema), "--limit", "60",
        "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    d = json.loads((out / "report.json").read_text())
    jsonschema.validate(d, schema_for_report(d))
    assert schema_for_report(d) == report_schema(TABULAR_SECTIONS)
    assert d["model"]["modality"] == "tabular" and d["data"]["n_samples"] == 60  # --limit applies
    t = d["tabular"]
    assert t["records"] == 60 and t["counted_valid"] == 1.0 and t["constraint_satisfaction"] == 1.0
    assert [s["attack"] for s in t["stages"]] == ["cpgd", "moeva"]
    assert t["stages"][0]["skipped"] == "model has no gradients" and t["mean_queries"] > 0
    assert 0 <= t["robust_accuracy"] < t["robustness"]["clean_accuracy"]  # the attack flips records
    assert not t["robustness"]["degenerate"] and d["findings"] == []
    # the examples are records a person could submit: only 'amount' moved, by at most 10
    assert t["examples"]
    for e in t["examples"]:
        assert [c["feature"] for c in e["changes"]] == ["amount"]
        assert abs(e["changes"][0]["after"] - e["changes"][0]["before"]) <= 10
    assert t["headline"][0]["label"] == "tabular/loans"
    html = (out / "report.html").read_text()
    assert "tabular/loans" in html and "amount" in html and "balanced accuracy" in html
    # the gate reads the tabular headline row
    res = bastion(
        "audit", f"{model}:build", f"csv:{data}", "--schema", str(schema), "--limit", "60",
        "--min-robust-accuracy", "0.99", "--out", str(tmp_path / "gated"),
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    gated = json.loads((tmp_path / "gated" / "report.json").read_text())
    assert [f["threat"] for f in gated["findings"] if f["code"] == "BA301"] == ["tabular/loans"]


@pytest.mark.slow
def test_tabular_degenerate_model_is_flagged(tmp_path: Path) -> None:
    model, data, schema = _tabular_files(tmp_path)
    out = tmp_path / "report"
    res = bastion(
        "audit", f"{model}:always_accept", f"csv:{data}", "--schema", str(schema), "--out", str(out)
    )
    assert res.returncode == 1, res.stderr
    d = json.loads((out / "report.json").read_text())
    jsonschema.validate(d, report_schema(TABULAR_SECTIONS))
    rob = d["tabular"]["robustness"]
    assert rob["degenerate"] and rob["majority_prediction"] == 1.0 and rob["mcc"] == 0.0
    assert rob["balanced_accuracy"] == 0.5
    # "robust" exactly as often as it is right: no attack can flip a constant
    assert d["tabular"]["robust_accuracy"] == pytest.approx(rob["clean_accuracy"])
    assert sorted(f["code"] for f in d["findings"]) == ["BA108", "BA602"] and "BA602" in res.stdout


@pytest.mark.slow
def test_text_and_tabular_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    model, data = _text_files(tmp_path)
    tab_model, tab_data, schema = _tabular_files(tmp_path)
    cases = {
        "--epsilon": ("audit", f"{model}:build", f"csv:{data}", "--text-column", "review",
                      "--epsilon", "0.1"),
        "--certify": ("audit", f"{tab_model}:build", f"csv:{tab_data}", "--schema", str(schema),
                      "--certify", "ibp"),
        "--schema": ("audit", "zoo:digits-mlp", "digits", "--threat-preset", "german_credit"),
        "pass --text-column": ("audit", f"{model}:build", f"csv:{data}", "--label", "label"),
        "unknown text_attacks 'bert'": ("audit", f"{model}:build", f"csv:{data}", "--text-column", "review",
                                        "--text-attacks", "invisible,bert"),
        "no text column 'text'": ("audit", f"{model}:build", f"csv:{data}", "--text-column", "text"),
    }  # fmt: skip
    for expected, args in cases.items():
        res = bastion(*args, "--out", str(tmp_path / "never"))
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (expected, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
        assert expected in lines[0], (expected, lines[0])
    assert not (tmp_path / "never").exists()


def test_audit_help_teaches_text_and_tabular() -> None:
    text = bastion("audit", "--help").stdout
    for word in (
        "--text-column",
        "--text-attacks",
        "--text-presets",
        "--schema",
        "--threat-preset",
        "--budget",
        "BA601",
        "BA602",
        "sst2",
    ):
        assert word in text, word


def test_text_audit_resumes_from_its_run_directory(tmp_path: Path) -> None:
    """--resume keeps one run per attack and preset (and the sanitiser's rows); a second audit reads them
    back, and both report the unsharded audit's numbers."""
    model, data = _text_files(tmp_path)
    base = ("audit", f"{model}:build", f"csv:{data}", "--text-column", "review", "--text-attacks",
            "invisible,deepwordbug", "--text-presets", "paper")  # fmt: skip
    resume = ("--resume", str(tmp_path / "run"))
    reports = []
    for name, extra in (("1", resume), ("2", resume), ("whole", ())):
        res = bastion(*base, *extra, "--out", str(tmp_path / name))
        assert res.returncode in (0, 1), res.stderr
        text = json.loads((tmp_path / name / "report.json").read_text())["text"]
        keep = ("attack", "preset", "status", "success_rate", "mean_queries")
        rows = [{k: r.get(k) for k in keep} for r in text["attacks"]]
        reports.append((rows, text["headline"], text["sanitiser"]["rows"]))
    assert reports[0] == reports[1] == reports[2]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "deepwordbug-paper", "invisible-paper", "invisible-paper-sanitised"
    ]  # fmt: skip


def test_tabular_audit_resumes_from_its_run_directory(tmp_path: Path) -> None:
    model, data, schema = _tabular_files(tmp_path)
    base = ("audit", f"{model}:build", f"csv:{data}", "--schema", str(schema))
    resume = ("--resume", str(tmp_path / "run"))
    blocks = []
    for name, extra in (("1", resume), ("2", resume), ("whole", ())):
        res = bastion(*base, *extra, "--out", str(tmp_path / name))
        assert res.returncode in (0, 1), res.stderr
        block = json.loads((tmp_path / name / "report.json").read_text())["tabular"]
        block["stages"] = [{k: v for k, v in st.items() if k != "seconds"} for st in block["stages"]]
        blocks.append({k: v for k, v in block.items() if k not in ("seconds", "params")})
    assert blocks[0] == blocks[1] == blocks[2]
    assert (tmp_path / "run" / "manifest.json").exists()
