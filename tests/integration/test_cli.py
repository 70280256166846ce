"""The ``bastion`` command as a user runs it: real files, exit codes. ``bastion`` here is a real process
(other modules import it for their end-to-end runs); ``bastion_here`` runs the same command in this
process, for the tests that are about what a command does rather than how the process starts."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_inproc import bastion as bastion_here

EXE = shutil.which("bastion", path=str(Path(sys.executable).parent))


def bastion(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [EXE] if EXE else [sys.executable, "-m", "bastion"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_console_script_installed():
    assert EXE is not None, "the 'bastion' console script is not installed next to this Python"


def test_the_real_entry_point_registers_every_command():
    # the console script imports each command module before it runs the app: --help lists them all
    res = bastion("--help")
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout
    for command in (
        "attack",
        "evaluate",
        "audit",
        "certify",
        "data",
        "harden",
        "scan-model",
        "serve",
        "patch",
        "universal",
        "spatial",
    ):
        assert command in res.stdout, command


@pytest.mark.parametrize("command", [[], ["attack"], ["evaluate"], ["zoo", "list"], ["attacks", "list"]])
def test_help(command):
    res = bastion_here(*command, "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout


def test_evaluate_help_teaches():
    text = bastion_here("evaluate", "--help").stdout
    for word in ("--epsilon", "--preset", "zoo:NAME", "mnist:DIR", "Example"):
        assert word in text


def test_attacks_list_names_every_attack():
    from bastion.attacks import available

    res = bastion_here("attacks", "list")
    assert res.returncode == 0
    for name in available():
        assert name in res.stdout
    assert "labels" in res.stdout  # HopSkipJump's access is shown


def test_zoo_list():
    res = bastion_here("zoo", "list")
    assert res.returncode == 0 and "digits-mlp" in res.stdout


def test_attack_writes_results(tmp_path):
    res = bastion(
        "attack",
        "zoo:digits-mlp",
        "digits",
        "--attack",
        "pgd",
        "--epsilon",
        "0.2",
        "--steps",
        "10",
        "--limit",
        "40",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "adv.npz"),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["n_samples"] == 40 and summary["params"]["steps"] == 10
    arrays = np.load(tmp_path / "adv.npz")
    linf = np.abs(arrays["x_adv"] - arrays["x"]).reshape(40, -1).max(axis=1)
    assert linf.max() <= 0.2 + 1e-6
    assert arrays["x_adv"].min() >= 0 and arrays["x_adv"].max() <= 1
    correct = arrays["clean_predictions"] == arrays["y"]
    assert summary["success_rate"] == pytest.approx((arrays["success"] & correct).sum() / correct.sum())
    assert summary["success_rate"] > 0.5
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_evaluate_json_and_determinism(tmp_path):
    args = ["evaluate", "zoo:digits-mlp", "digits", "--epsilon", "0.1", "--preset", "fast", "--limit", "60"]
    first = bastion_here(*args, "--seed", "1", "--json", str(tmp_path / "a.json"))
    assert first.returncode == 0, first.stderr
    assert "robust accuracy" in first.stdout
    second = bastion_here(*args, "--seed", "1", "--json", str(tmp_path / "b.json"))
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    for key in ("clean_accuracy", "robust_accuracy", "n_samples", "threat", "stages", "seconds"):
        assert key in a
    assert {"attack", "robust_accuracy", "queries", "gradient_evals", "seconds"} <= set(a["stages"][0])
    assert a["n_samples"] == 60 and a["threat"] == {
        "norm": "linf",
        "epsilon": 0.1,
        "epsilon_label": "0.1",
        "bounds": [0.0, 1.0],
    }
    assert a["robust_accuracy"] <= a["clean_accuracy"]
    assert second.returncode == 0
    assert (a["clean_accuracy"], a["robust_accuracy"]) == (b["clean_accuracy"], b["robust_accuracy"])


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown-attack", "available: apgd-ce"),
        ("zero-epsilon", "epsilon must be > 0"),
        ("missing-file", "missing.npz"),
        ("nan", "NaN"),
        ("out-of-bounds", "outside"),
        ("shape", "cannot take inputs of shape"),
        ("unsafe", "refus"),
        ("unknown-zoo", "digits-mlp"),
        ("bad-param", "accepts"),
    ],
)
def test_bad_input_exits_2_with_one_line(case, message, tmp_path):
    rng = np.random.default_rng(0)
    data = "digits"
    model = "zoo:digits-mlp"
    extra: list[str] = ["--epsilon", "0.1"]
    if case == "unknown-attack":
        extra += ["--attack", "pgdd"]
    elif case == "zero-epsilon":
        extra = ["--epsilon", "0"]
    elif case == "missing-file":
        data = f"npz:{tmp_path / 'missing.npz'}"
    elif case == "nan":
        x = rng.random((10, 1, 8, 8)).astype(np.float32)
        x[3, 0, 2, 2] = np.nan
        data = _npz(tmp_path / "nan.npz", x, np.zeros(10, dtype=np.int64))
    elif case == "out-of-bounds":
        x = (rng.random((10, 1, 8, 8)) * 255).astype(np.float32)
        data = _npz(tmp_path / "big.npz", x, np.zeros(10, dtype=np.int64))
    elif case == "shape":
        data = _npz(
            tmp_path / "s.npz", rng.random((10, 1, 28, 28)).astype(np.float32), np.zeros(10, dtype=np.int64)
        )
    elif case == "unsafe":
        bad = tmp_path / "model.pt"
        bad.write_bytes(pickle.dumps(_Payload()))
        model = str(bad)
    elif case == "unknown-zoo":
        model = "zoo:nope"
    elif case == "bad-param":
        extra += ["--param", "no_such=3"]
    # one case through the real entry point: exit code 2 and one line from the process itself
    run = bastion if case == "unknown-zoo" else bastion_here
    res = run("attack", model, data, *extra, "--limit", "5")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert "pwned" not in res.stdout + res.stderr


def test_help_paragraphs_are_unwrapped_and_list_items_kept():
    from typer.testing import CliRunner

    from bastion.cli import audit_cmd  # noqa: F401  (registers `audit`)
    from bastion.cli.app import app
    from bastion.cli.common import unwrap_help

    doc = """First line
    continues here.

    - item one
    - item two

    Example: [bold]bastion x[/]
    """
    expected = "First line continues here.\n\n- item one\n- item two\n\nExample: [bold]bastion x[/]"
    assert unwrap_help(doc) == expected
    assert unwrap_help(None) is None
    # The docstring breaks this sentence after "and the"; rich help would keep that break.
    res = CliRunner().invoke(app, ["audit", "--help"], env={"COLUMNS": "200"})
    sentence = "noise probes, and the checks that tell whether the evaluation itself can be trusted"
    assert res.exit_code == 0 and sentence in res.output
