"""``bastion attack`` on a tabular model, end to end: the user's schema, CSV and model factory (a
scikit-learn model, attacked black-box), the command run in-process, JSON, and one-line errors with exit
code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from cli_inproc import bastion

from bastion.tabular import Feature, TabularSchema

MODEL = """
from pathlib import Path
import csv
from sklearn.linear_model import LogisticRegression

def build():
    rows = list(csv.DictReader(open(Path(__file__).with_name("loans.csv"))))
    x = [[float(r["income"]), float(r["amount"]), float(r["age"])] for r in rows]
    return LogisticRegression().fit(x, [int(r["label"]) for r in rows])
"""


def loans(tmp_path: Path) -> tuple[Path, Path]:
    """A seeded loans CSV (income, amount, age -> refused) and its schema: only 'amount' may move, by
    at most 10. Shared with the tabular audit's CLI test."""
    rng = np.random.default_rng(0)
    income = rng.integers(20, 100, 80)
    amount = rng.integers(1, 50, 80)
    age = rng.integers(20, 70, 80)
    label = (amount * 2 > income).astype(int)  # 1 = refused: asks for much against its income
    data = tmp_path / "loans.csv"
    data.write_text("income,amount,age,label\n" + "".join(
        f"{a},{b},{c},{d}\n" for a, b, c, d in zip(income, amount, age, label, strict=True)
    ))  # fmt: skip
    schema = TabularSchema(
        features=(
            Feature("income", "integer", low=0, high=200, immutable=True),
            Feature("amount", "integer", low=1, high=60, max_change=10),
            Feature("age", "integer", low=18, high=100, immutable=True),
        ),
        label="label",
        name="loans",
    )
    return data, schema.to_json(tmp_path / "schema.json")


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    data, schema = loans(tmp_path)
    model = tmp_path / "model.py"
    model.write_text(MODEL)
    return model, data, schema


def test_tabular_attack_end_to_end(tmp_path: Path) -> None:
    model, data, schema = _files(tmp_path)
    out = tmp_path / "result.json"
    res = bastion(
        "attack", f"{model}:build", f"csv:{data}", "--schema", str(schema), "--attack", "moeva",
        "--json", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())
    assert summary["records"] == 80 and summary["constraint_satisfaction"] == 1.0
    assert summary["success_rate"] > 0 and summary["mean_queries"] > 0
    # Only 'amount' may move (income and age are immutable), by at most 10.
    for line in summary["examples"]:
        changed = line.split(": ", 1)[1]
        assert "income" not in changed and "age" not in changed and "amount" in changed, line
        before, after = (int(v) for v in changed.removeprefix("amount ").split(" -> "))
        assert abs(after - before) <= 10, line


def test_tabular_attack_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    model, data, schema = _files(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("income,amount,height,label\n50,10,170,0\n")
    cases = {
        "--schema": ("attack", f"{model}:build", f"csv:{data}", "--attack", "moeva"),
        "moeva": ("attack", f"{model}:build", f"csv:{data}", "--schema", str(schema), "--attack", "cpgd"),
        "height": ("attack", f"{model}:build", f"csv:{other}", "--schema", str(schema), "--attack", "moeva"),
    }
    for expected, args in cases.items():
        res = bastion(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (expected, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
        assert expected in lines[0], (expected, lines[0])


def test_tabular_attack_in_shards_resumes_with_the_one_pass_records(tmp_path: Path) -> None:
    model, data, schema = _files(tmp_path)
    base = ("attack", f"{model}:build", f"csv:{data}", "--schema", str(schema), "--attack", "moeva")
    sharded = ("--shard-size", "30", "--resume", str(tmp_path / "run"))
    out = []
    for name, extra in (("1", sharded), ("2", sharded), ("whole", ())):
        res = bastion(*base, *extra, "--json", str(tmp_path / f"{name}.json"))
        assert res.returncode == 0, res.stderr
        out.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert out[0]["params"]["engine"]["resumed"] == [] and out[1]["params"]["engine"]["resumed"] == [0, 1, 2]
    for run in out[:2]:
        assert run["attack"] == "moeva" and run["examples"] == out[2]["examples"]
        assert (
            run["success_rate"] == out[2]["success_rate"] > 0
            and run["mean_queries"] == out[2]["mean_queries"]
        )
