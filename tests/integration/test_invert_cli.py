"""``bastion invert``: MI-Face through the CLI, with exact query accounting, JSON and the image grid."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bastion.cli import invert_cmd  # noqa: F401  (registers `invert` on the app)
from bastion.cli.app import app

runner = CliRunner()


def invert(*args: str):
    return runner.invoke(app, ["invert", *args])


def test_black_box_rounded_with_evaluator_json_and_grid(tmp_path):
    report, grid = tmp_path / "r.json", tmp_path / "g.png"
    res = invert("zoo:digits-cnn", "--data", "digits", "--class", "3", "--class", "5", "--steps", "5",
                 "--samples", "4", "--output", "round2", "--evaluator", "zoo:digits-mlp",
                 "--json", str(report), "--out", str(grid), "--seed", "1")  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(report.read_text())
    assert payload["classes"] == [3, 5] and payload["white_box"] is False and payload["output"] == "round2"
    # one evaluation (samples + 1 rows) per update plus the final one, exactly counted
    assert payload["queries"] == 5 * sum(s + 1 for s in payload["steps"]) <= 2 * 6 * 5
    assert 0.0 <= payload["quality"]["evaluator_accuracy"] <= 1.0 and len(payload["quality"]["ssim"]) == 2
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "evaluator accuracy" in res.output and f"queries: {payload['queries']}" in res.output


def test_white_box_all_classes_and_budget(tmp_path):
    report = tmp_path / "w.json"
    res = invert("zoo:digits-cnn", "--data", "digits", "--all-classes", "--white-box", "--steps", "20",
                 "--threshold", "0", "--queries", "8", "--json", str(report))  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(report.read_text())
    assert payload["classes"] == list(range(10)) and payload["white_box"] is True
    assert payload["stop_reason"] == ["budget"] * 10 and payload["queries"] == 80  # 8 rows per class


def test_shape_without_data():
    res = invert("zoo:digits-cnn", "--shape", "1,8,8", "-k", "4", "--steps", "2", "--samples", "2")
    assert res.exit_code == 0, res.output
    assert "queries: 9" in res.output  # 3 evaluations of 3 rows


def test_one_line_errors():
    for args, message in [
        (["--data", "digits"], "--class"),
        (["--data", "digits", "-k", "1", "--white-box", "--output", "labels"], "--white-box"),
        (["-k", "1"], "--shape"),
        (["--data", "digits", "-k", "12"], "[0, 10)"),
        (["--data", "digits", "-k", "1", "--output", "round"], "round"),
    ]:
        res = invert("zoo:digits-cnn", *args, "--steps", "1")
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and res.output.count("error:") == 1


def test_center_start_and_normalised_steps(tmp_path):
    report = tmp_path / "c.json"
    res = invert("zoo:digits-cnn", "--data", "digits", "-k", "2", "--white-box", "--start", "center",
                 "--normalize", "--step-size", "0.05", "--steps", "30", "--json", str(report))  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(report.read_text())
    assert payload["params"]["normalize"] is True and payload["confidence"][0] > 0.9
