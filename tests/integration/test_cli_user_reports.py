"""What a new user hit with a model of their own (issue 13, part 7), run through the real ``bastion``
process from a working directory of their own: attack metrics on a weak model, factories that fail,
fractions for epsilon, --mean/--std, --device, harden's evaluation data, one-line warnings."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_inproc import bastion

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    from bastion.model import TorchClassifier


    class Brightness(nn.Module):
        '''Class 0 scores a constant 0.5, class 1 the mean input (digits' mean is about 0.3): every input
        is called 0 until an attack brightens it by about 0.2. The other 8 classes never win.'''

        def forward(self, x):
            m = x.flatten(1).mean(1)
            return torch.stack([torch.full_like(m, 0.5), m] + [m * 0 - 10] * 8, dim=1)


    class Sign(nn.Module):
        '''Two classes by the sign of the mean input: tells normalised from raw inputs apart.'''

        def forward(self, x):
            m = x.flatten(1).mean(1)
            return torch.stack([-m, m], dim=1)


    class Softmaxed(nn.Module):
        def forward(self, x):
            m = x.flatten(1).mean(1)
            return torch.softmax(torch.stack([torch.full_like(m, 0.5), m] + [m * 0 - 10] * 8, dim=1), 1)


    def brightness():
        return Brightness()


    def sign():
        return Sign()


    def sign_classifier():
        return TorchClassifier(Sign(), mean=0.5, name="sign-normalised")


    def softmaxed():
        return Softmaxed()


    def build_args(width):
        return Brightness()


    def broken():
        raise RuntimeError("weights server unreachable")
    """
)


@pytest.fixture()
def user(tmp_path) -> Path:
    """A user's project folder holding their model file and a two-class data set of flat images."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "models.py").write_text(MODELS)
    (work / "syntax_error.py").write_text("def build(:\n    pass\n")
    x = np.concatenate([np.full((10, 1, 4, 4), 0.2), np.full((10, 1, 4, 4), 0.8)]).astype(np.float32)
    np.savez(work / "flat.npz", x=x, y=np.repeat([0, 1], 10))
    return work


def test_attack_counts_only_correctly_classified_inputs(user):
    res = bastion(
        "attack", "models.py:brightness", "digits", "--attack", "pgd", "--epsilon", "0.3", "--steps", "10",
        "--limit", "100", "--out", "adv.npz", "--json", "r.json", cwd=user,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads((user / "r.json").read_text())
    arrays = np.load(user / "adv.npz")
    correct = arrays["clean_predictions"] == arrays["y"]
    assert (arrays["clean_predictions"] == 0).all()  # the model calls everything 0
    assert summary["clean_accuracy"] == pytest.approx(correct.mean())
    assert summary["n_correct"] == correct.sum() and 0 < correct.sum() < 100
    fooled = arrays["success"] & correct
    assert summary["success_rate"] == pytest.approx(fooled.sum() / correct.sum())
    # Distances over real adversarials only: the misclassified inputs' zeros do not drag it to 0.
    assert summary["median_distance"] == pytest.approx(float(np.median(arrays["distance"][fooled])))
    assert summary["median_distance"] > 0.1
    assert summary["robust_accuracy"] == pytest.approx(
        (correct & (arrays["predictions"] == arrays["y"])).mean()
    )
    assert f"{100 - correct.sum()} already misclassified need no attack" in " ".join(res.stdout.split())


def test_targeted_attack_saves_its_targets(user):
    res = bastion(
        "attack", "zoo:digits-mlp", "digits", "--targeted", "--epsilon", "8/255", "--steps", "5",
        "--limit", "20", "--out", "t.npz", "--json", "t.json", cwd=user,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    arrays = np.load(user / "t.npz")
    assert arrays["targets"].shape == (20,) and (arrays["targets"] != arrays["y"]).all()
    assert ((arrays["predictions"] == arrays["targets"]) >= arrays["success"]).all()
    threat = json.loads((user / "t.json").read_text())["threat"]
    assert threat["epsilon"] == 8 / 255 and threat["epsilon_label"] == "8/255"
    assert "eps=8/255" in res.stdout and "0.0313" not in res.stdout


def run_here(*args: str):
    """The CLI in this process (no interpreter start): for the fast failure paths."""
    from typer.testing import CliRunner

    from bastion.cli import app as app_module
    from bastion.cli import (  # noqa: F401  (register the commands)
        audit_cmd,
        certify_cmd,
        data_cmd,
        harden_cmd,
        poison_cmd,
        scan_data_cmd,
        scan_model_cmd,
    )

    return CliRunner().invoke(app_module.app, list(args), terminal_width=100)


@pytest.mark.parametrize(
    ("command", "spec", "message"),
    [
        ("attack", "models.py:build_args", "needs argument(s) width"),
        ("attack", "models.py:broken", "RuntimeError: weights server unreachable"),
        ("attack", "syntax_error.py:build", "SyntaxError"),
        ("attack", "models.py:nothing", "has no callable 'nothing'"),
        ("certify", "models.py:build_args", "needs argument(s) width"),
        ("scan-model", "models.py:broken", "RuntimeError: weights server unreachable"),
    ],
)
def test_user_code_failures_are_one_line_and_exit_2(user, monkeypatch, command, spec, message):
    monkeypatch.chdir(user)
    extra = ["--sigma", "0.25", "--n", "10"] if command == "certify" else []
    res = run_here(command, spec, "npz:flat.npz", *extra)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize(
    ("args", "accuracy"),
    [
        (["models.py:sign"], 0.5),  # raw inputs are all positive: everything is class 1
        (["models.py:sign", "--mean", "0.5"], 1.0),  # normalised inside the model: the sign separates
        (["models.py:sign", "--mean", "0.5", "--std", "0.1"], 1.0),
        (["models.py:sign_classifier"], 1.0),  # a factory returning a TorchClassifier keeps its mean
    ],
)
def test_mean_std_and_classifier_factories(user, monkeypatch, args, accuracy):
    monkeypatch.chdir(user)
    res = run_here("attack", *args, "npz:flat.npz", "--epsilon", "1/100", "--steps", "2", "--json", "r.json")
    assert res.exit_code == 0, res.output
    assert json.loads((user / "r.json").read_text())["clean_accuracy"] == pytest.approx(accuracy)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models.py:sign_classifier", "--mean", "0.5"], "normalises its inputs itself"),
        (["zoo:digits-mlp", "--std", "0.3"], "normalises its inputs itself"),
        (["models.py:sign", "--mean", "a,b"], "--mean takes numbers"),
        (["models.py:sign", "--epsilon", "8/0"], "--epsilon takes a number or a fraction"),
        (["models.py:sign", "--epsilon", "-1/255"], "epsilon must be > 0"),
        (["models.py:sign", "--device", "tpu"], "--device takes auto"),
    ],
)
def test_bad_ergonomic_options_exit_2_with_one_line_and_no_progress_bar(user, monkeypatch, args, message):
    monkeypatch.chdir(user)
    res = run_here("attack", *args[:1], "npz:flat.npz", *args[1:])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stdout == ""


def test_device_mean_std_are_offered_by_every_command_that_loads_a_model():
    for command in ("attack", "evaluate", "certify", "harden", "audit", "scan-model", "scan-data", "poison"):
        text = run_here(command, "--help").stdout
        assert all(opt in text for opt in ("--device", "--mean", "--std")), command
    assert "--device" in run_here("data", "drift", "--help").stdout


def test_no_progress_bar_before_an_error(tmp_path):
    res = bastion("data", "manifest", f"mnist:{tmp_path}", "--out", str(tmp_path / "m.json"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = bastion(
        "harden", "zoo:digits-mlp", "digits", "--method", "pgd", "--out", str(tmp_path / "w.safetensors")
    )
    assert res.returncode == 2 and res.stderr.strip().startswith("error:"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_probability_warning_is_one_line(user):
    res = bastion("attack", "models.py:softmaxed", "digits", "--limit", "5", "--steps", "2", cwd=user)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if "probabilities" in line]
    assert len(lines) == 1 and lines[0].startswith("warning:"), res.stderr
    assert "ProbabilityOutputWarning" not in res.stderr and ".py:" not in res.stderr


@pytest.mark.slow  # two CLI runs that train or audit (~20-40 s)
def test_harden_warns_when_evaluating_on_its_training_data(user):
    """An .npz has no test split: without --test-data the card's "test" accuracy is on the training
    file itself, and both the output and the card say so; with --test-data it is held out. A fine-tuned
    card records the sha256 of the weights it started from."""
    from bastion import zoo
    from bastion.data import load_dataset
    from bastion.loading import sha256_file

    common = ["harden", "zoo:digits-mlp", "npz:train.npz", "--method", "standard", "--epochs", "1"]
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    np.savez(user / "train.npz", x=train.x.numpy(), y=train.y.numpy())
    np.savez(user / "test.npz", x=test.x.numpy(), y=test.y.numpy())
    res = bastion(*common, "--eval-limit", "50", "--out", "a.safetensors", cwd=user)
    assert res.returncode == 0, res.stderr
    card = json.loads((user / "a.json").read_text())
    assert card["evaluation"]["n_in_training_data"] == 50
    assert "not held-out" in card["evaluation"]["warning"] and "not held-out" in res.stderr
    assert card["start_weights"]["sha256"] == zoo.card("digits-mlp")["sha256"]
    res = bastion(
        *common, "--eval-limit", "50", "--test-data", "npz:test.npz", "--weights", "a.safetensors",
        "--out", "b.safetensors", cwd=user,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    card = json.loads((user / "b.json").read_text())
    assert card["evaluation"]["n_in_training_data"] == 0 and "warning" not in card["evaluation"]
    assert card["evaluation"]["data"] == "test" and "not held-out" not in res.stderr
    start = card["start_weights"]
    assert start["file"] == "a.safetensors" and start["sha256"] == sha256_file(user / "a.safetensors")


def test_audit_of_out_of_bounds_data_writes_a_report_saying_why(user):
    """docs/audit.md: data outside the model's bounds stops the audit before any attack, with a report
    (BA106), not a bare usage error."""
    x = np.linspace(0, 255, 640, dtype=np.float32).reshape(10, 1, 8, 8)  # raw pixels, not [0, 1]
    np.savez(user / "raw.npz", x=x, y=np.arange(10))
    res = bastion("audit", "zoo:digits-mlp", "npz:raw.npz", "--out", "oob", "--limit", "10", cwd=user)
    assert res.returncode == 1, res.stderr
    report = json.loads((user / "oob" / "report.json").read_text())
    assert report["verdict"]["blocked"] is True
    assert [f["code"] for f in report["findings"]] == ["BA106"]


def test_audit_help_is_grouped_into_panels():
    text = run_here("audit", "--help").stdout
    for panel in ("Threats and attacks", "Defenses and certification", "Training-time threats", "Verdict"):
        assert panel in text
    assert "Text and tabular models" in text
    # was ~300 lines at 80 columns; the text and tabular panel (one line per option) brought it to ~205,
    # the scale-out panel (five options, one line each) to ~218, --physical (three lines) to ~225
    assert "Scale-out" in text
    assert len(text.splitlines()) < 228


@pytest.mark.slow  # two CLI runs that train or audit (~20-40 s)
def test_audit_training_manifest_from_relative_paths(user, tmp_path):
    """A multi-file dataset named relatively, a manifest made from its absolute path: no false BA404."""
    data = tmp_path / "shared" / "cifar"
    data.mkdir(parents=True)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    np.savez(data / "cifar10_test.npz", x=x, y=np.arange(12) % 10)
    for i in range(1, 6):  # the train split is five files: the case where the root was joined twice
        np.savez(data / f"cifar10_train_{i}.npz", x=x[2 * i - 2 : 2 * i], y=np.arange(2) + i)
    made = bastion("data", "manifest", f"cifar10:{data}", "--out", "m.json", cwd=user)
    assert made.returncode == 0, made.stderr
    (user / "tiny.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))\n"
    )
    res = bastion(
        "audit", "tiny.py:build", "cifar10:../shared/cifar", "--training-data", "cifar10:../shared/cifar",
        "--training-manifest", "m.json", "--limit", "10", "--preset", "fast", "--no-checks", "--no-curve",
        "--out", "rel", cwd=user,
    )  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    report = json.loads((user / "rel" / "report.json").read_text())
    assert "BA404" not in [f["code"] for f in report["findings"]], report["findings"]


@pytest.mark.slow  # two CLI runs that train or audit (~20-40 s)
def test_audit_takes_fractions_and_report_compare_names_the_regression(user):
    res = bastion(
        "audit", "zoo:digits-mlp", "digits", "--epsilon", "8/255", "--epsilon", "0.1", "--limit", "10",
        "--preset", "fast", "--no-checks", "--no-curve", "--out", "main", cwd=user,
    )  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    report = json.loads((user / "main" / "report.json").read_text())
    assert [t["epsilon"] for t in report["config"]["threats"]] == [8 / 255, 0.1]
    worse = json.loads(json.dumps(report))
    worse["threats"][-1]["robust_accuracy"] = report["threats"][-1]["robust_accuracy"] - 0.2
    (user / "worse.json").write_text(json.dumps(worse))
    res = bastion("report", "compare", "main/report.json", "worse.json", "--fail-on-regression", cwd=user)
    assert res.returncode == 1
    label = report["threats"][-1]["label"]
    assert f"regression: robust {label} fell 20.0 pts" in res.stderr, res.stderr
    other = json.loads(json.dumps(report))
    other["data"]["name"], other["model"]["input_shape"] = "cifar10-test", [3, 32, 32]
    (user / "other.json").write_text(json.dumps(other))
    res = bastion("report", "compare", "main/report.json", "other.json", cwd=user)
    assert (
        res.returncode == 2
        and "pass --force" in res.stderr
        and "data digits-test -> cifar10-test" in res.stderr
    )
    assert len(res.stderr.strip().splitlines()) == 1
    res = bastion("report", "compare", "main/report.json", "other.json", "--force", cwd=user)
    assert res.returncode == 0, res.stderr
    assert "comparing different things" in res.stderr
