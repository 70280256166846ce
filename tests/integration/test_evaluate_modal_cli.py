"""``bastion evaluate`` on text and tabular models, end to end: the cascade's table and JSON (the
command run in-process), and one-line errors with exit code 2 for options that belong to another
modality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_inproc import bastion
from test_tabular_attack_cli import _files as tabular_files
from test_text_attack_cli import ROWS
from test_text_attack_cli import _files as text_files


def test_evaluate_text_model_at_one_preset(tmp_path: Path) -> None:
    model, data = text_files(tmp_path)
    out = tmp_path / "eval.json"
    res = bastion(
        "evaluate", f"{model}:build", f"csv:{data}", "--text-column", "review", "--preset", "strict",
        "--json", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    payload = json.loads(out.read_text())
    assert payload["modality"] == "text" and [p["preset"] for p in payload["presets"]] == ["strict"]
    run = payload["presets"][0]
    assert run["n_samples"] == len(ROWS) and run["clean_accuracy"] == 1.0
    assert [s["attack"] for s in run["stages"]][:2] == ["invisible", "homoglyph"]
    lost = sum(s["fooled"] for s in run["stages"])
    assert lost > 0 and abs(run["robust_accuracy"] - (len(ROWS) - lost) / len(ROWS)) < 1e-6
    assert "accuracy under attack" in res.stdout


def test_evaluate_text_model_in_shards_resumes_with_the_same_numbers(tmp_path: Path) -> None:
    model, data = text_files(tmp_path)
    base = ("evaluate", f"{model}:build", f"csv:{data}", "--text-column", "review", "--preset", "paper")
    sharded = ("--shard-size", "2", "--resume", str(tmp_path / "run"))
    runs = []
    for name, extra in (("1", sharded), ("2", sharded), ("whole", ())):
        res = bastion(*base, *extra, "--json", str(tmp_path / f"{name}.json"))
        assert res.returncode == 0, res.stderr
        runs.append(json.loads((tmp_path / f"{name}.json").read_text())["presets"][0])
    assert runs[0]["engine"]["resumed"] == [] and runs[1]["engine"]["resumed"] == [0, 1, 2]
    assert (tmp_path / "run" / "paper" / "manifest.json").exists() and "engine" not in runs[2]
    for run in runs[:2]:
        assert run["robust_accuracy"] == runs[2]["robust_accuracy"] < run["clean_accuracy"]
        assert [(s["attack"], s["attacked"], s["fooled"], s["queries"]) for s in run["stages"]] == [
            (s["attack"], s["attacked"], s["fooled"], s["queries"]) for s in runs[2]["stages"]
        ]


@pytest.mark.slow  # 9 s; test_text_attack_cli checks --sanitise on the attack command in the suite
def test_evaluate_text_model_behind_the_sanitiser(tmp_path: Path) -> None:
    model, data = text_files(tmp_path)
    out = tmp_path / "eval.json"
    # Behind the sanitiser (adaptive: the cascade queries the defended model) the character tricks fail.
    res = bastion(
        "evaluate", f"{model}:build", f"csv:{data}", "--text-column", "review", "--preset", "strict",
        "--sanitise", "--json", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    defended = json.loads(out.read_text())
    assert defended["sanitised"] is True
    tricks = [s for s in defended["presets"][0]["stages"] if s["attack"] in ("invisible", "homoglyph")]
    assert [s["fooled"] for s in tricks] == [0, 0] and tricks[0]["attacked"] == len(ROWS)


def test_evaluate_tabular_model(tmp_path: Path) -> None:
    model, data, schema = tabular_files(tmp_path)
    out = tmp_path / "eval.json"
    res = bastion("evaluate", f"{model}:build", f"csv:{data}", "--schema", str(schema), "--json", str(out))
    assert res.returncode == 0, res.stderr
    payload = json.loads(out.read_text())
    assert payload["modality"] == "tabular" and payload["constraint_satisfaction"] == 1.0
    stages = {s["attack"]: s for s in payload["stages"]}
    assert stages["cpgd"]["skipped"] and stages["moeva"]["attacked"] == payload["records"] == 80
    assert payload["robust_accuracy"] < payload["clean_accuracy"] and "mcc" in payload
    # in shards, resumed: the same records flipped as in one pass
    base = ("evaluate", f"{model}:build", f"csv:{data}", "--schema", str(schema), "--shard-size", "30",
            "--resume", str(tmp_path / "run"))  # fmt: skip
    for name in ("1", "2"):
        res = bastion(*base, "--json", str(tmp_path / f"{name}.json"))
        assert res.returncode == 0, res.stderr
        sharded = json.loads((tmp_path / f"{name}.json").read_text())
        assert sharded["robust_accuracy"] == payload["robust_accuracy"]
        assert [s["successes"] for s in sharded["stages"]] == [s["successes"] for s in payload["stages"]]
    assert sharded["engine"]["resumed"] == [0, 1, 2] and sharded["engine"]["shards"] == 3


def test_evaluate_refuses_other_modalities_options(tmp_path: Path) -> None:
    tmodel, tdata = text_files(tmp_path)
    model, data, schema = tabular_files(tmp_path)
    text = ("evaluate", f"{tmodel}:build", f"csv:{tdata}", "--text-column", "review")
    cases = {
        "image preset": (*text, "--preset", "fast"),
        "--defense": (*text, "--defense", "jpeg:75"),
        "tabular model is evaluated": ("evaluate", f"{model}:build", f"csv:{data}", "--schema", str(schema),
                                       "--preset", "strict"),
        "--threat-preset/--budget": ("evaluate", "zoo:digits-mlp", "digits", "--budget", "0.1"),
    }  # fmt: skip
    for expected, args in cases.items():
        res = bastion(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, (expected, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
        assert expected in lines[0], (expected, lines[0])


def test_modality_is_read_from_the_command_line_and_the_csv_header(tmp_path: Path) -> None:
    import gzip

    from bastion.cli._audit_modal import modality

    texts = tmp_path / "posts.csv.gz"
    with gzip.open(texts, "wt", encoding="utf-8") as fh:
        fh.write("text,label\nfree cash,1\n")
    numbers = tmp_path / "features.csv"
    numbers.write_text("a,b,label\n0.1,0.2,1\n")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("t\xe9xt,label\n".encode("latin-1"))
    cases = {
        ("m.py:f", f"csv:{texts}", None, None): "text",  # a 'text' column in the header
        ("m.py:f", str(numbers), None, None): "image",
        ("m.py:f", str(numbers), "a", None): "text",  # --text-column names it
        ("m.py:f", str(numbers), None, Path("s.json")): "tabular",
        ("zoo:sst2-wordcnn", "npz:x.npz", None, None): "text",
        ("m.py:f", "sst2", None, None): "text",
        ("m.py:f", str(bad), None, None): "image",  # unreadable header: the loader will say why
        ("m.py:f", str(tmp_path / "missing.csv"), None, None): "image",
    }
    for (model, data, column, schema), expected in cases.items():
        assert modality(model, data, text_column=column, schema=schema) == expected, (data, column)
