"""``bastion attack`` on a text model, end to end: the user's own model factory and CSV data, the
command run in-process, the JSON a pipeline reads, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from cli_inproc import bastion

MODEL = """
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

POS = ["a great film", "great acting", "a wonderful story", "great and wonderful", "wonderful cast"]
NEG = ["a terrible film", "terrible acting", "an awful story", "awful and terrible", "awful cast"]


def build():
    return make_pipeline(CountVectorizer(), LogisticRegression(C=10)).fit(POS + NEG, [1] * 5 + [0] * 5)
"""

ROWS = [("a great film", 1), ("great acting and a wonderful story", 1), ("a terrible film", 0),
        ("awful acting", 0), ("wonderful", 1), ("terrible , awful", 0)]  # fmt: skip


def _files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model.py"
    model.write_text(MODEL)
    data = tmp_path / "reviews.csv"
    data.write_text("review,label\n" + "".join(f'"{t}",{y}\n' for t, y in ROWS))
    return model, data


def test_text_attack_end_to_end(tmp_path: Path) -> None:
    model, data = _files(tmp_path)
    out = tmp_path / "result.json"
    res = bastion(
        "attack", f"{model}:build", f"csv:{data}", "--text-column", "review", "--label", "label",
        "--attack", "deepwordbug", "--json", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())
    assert summary["n"] == len(ROWS) and summary["clean_accuracy"] == 1.0
    assert summary["invalid"] == 0  # every counted edit passed the verifier
    assert summary["success_rate"] > 0 and summary["threat"]["max_char_edits"] == 30  # the paper preset
    assert summary["examples"] and "->" in summary["examples"][0]["shown"]  # the edit is shown
    # The invisible-character attack behind the sanitiser: nothing gets through.
    res = bastion(
        "attack", f"{model}:build", f"csv:{data}", "--text-column", "review", "--attack", "invisible",
        "--sanitise", "--json", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["success_rate"] == 0.0


def test_text_attack_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    model, data = _files(tmp_path)
    cases = {
        "no text column 'text'": ("attack", f"{model}:build", f"csv:{data}", "--attack", "deepwordbug"),
        "unknown preset": ("attack", f"{model}:build", f"csv:{data}", "--text-column", "review",
                           "--attack", "pwws", "--preset", "loose"),
    }  # fmt: skip
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("text,label\ncaf\xe9 great,1\n".encode("latin-1"))
    cases["UTF-8"] = ("attack", f"{model}:build", f"csv:{latin}", "--attack", "deepwordbug")
    for expected, args in cases.items():
        res = bastion(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (expected, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
        assert expected.lower() in lines[0].lower(), (expected, lines[0])


def test_text_attack_in_shards_resumes_with_the_one_pass_result(tmp_path: Path) -> None:
    model, data = _files(tmp_path)
    base = ("attack", f"{model}:build", f"csv:{data}", "--text-column", "review", "--attack", "deepwordbug")
    sharded = ("--shard-size", "2", "--resume", str(tmp_path / "run"))
    out = []
    for name, extra in (("1", sharded), ("2", sharded), ("whole", ())):
        res = bastion(*base, *extra, "--json", str(tmp_path / f"{name}.json"))
        assert res.returncode == 0, res.stderr
        out.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert out[0]["params"]["engine"]["resumed"] == [] and out[1]["params"]["engine"]["resumed"] == [0, 1, 2]
    for run in out[:2]:
        assert run["success_rate"] == out[2]["success_rate"] > 0 and run["examples"] == out[2]["examples"]
        assert run["mean_queries"] == out[2]["mean_queries"]
