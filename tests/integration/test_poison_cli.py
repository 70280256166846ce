"""``bastion poison``: write poisoned data, read it back as ``npz:``, the truth matches the table."""

from __future__ import annotations

import pytest
import torch
from test_cli import bastion
from typer.testing import CliRunner

from bastion.attacks.poisoning import load_poison_truth
from bastion.cli import poison_cmd  # noqa: F401  (registers `poison` on the app)
from bastion.cli.app import app
from bastion.data import load_dataset, load_digits

runner = CliRunner()


def poison(*args: str):
    return runner.invoke(app, ["poison", *args])


def test_the_issue_example_through_the_real_entry_point(tmp_path):
    out = tmp_path / "poisoned.npz"
    res = bastion(
        "poison", "digits", "--attack", "badnets", "--rate", "0.05", "--target", "0", "--out", str(out)
    )
    assert res.returncode == 0, res.stderr
    train = load_digits("train")
    ds = load_dataset(f"npz:{out}")
    poisoned, original, info = load_poison_truth(out)
    assert len(ds) == len(train) and int(poisoned.sum()) == round(0.05 * len(train)) == 67
    assert torch.equal(original, train.y) and bool((ds.y[poisoned] == 0).all())
    assert info["attack"] == "badnets" and info["target"] == 0 and info["seed"] == 0
    # rich wraps a long path at the terminal's width (under pytest-xdist the temporary folder is longer)
    assert "67" in res.stdout and "4.97%" in res.stdout and str(out) in "".join(res.stdout.split())


def test_targeted_label_flip_on_the_test_split(tmp_path):
    out = tmp_path / "flip.npz"
    res = poison("digits", "-a", "label-flip", "--rate", "0.5", "--source", "3", "--target", "8",
                 "--split", "test", "--seed", "4", "-o", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    test = load_digits("test")
    poisoned, original, info = load_poison_truth(out)
    n3 = int((test.y == 3).sum())
    assert int(poisoned.sum()) == round(0.5 * n3) and bool((original[poisoned] == 3).all())
    assert torch.equal(load_dataset(f"npz:{out}").y[poisoned], torch.full((int(poisoned.sum()),), 8))
    assert info["seed"] == 4 and info["params"] == {"rate": 0.5, "source": 3, "target": 8}
    assert "label-flip" in res.stdout and "samples per class" in res.stdout


def test_blend_with_options_and_a_subset(tmp_path):
    out = tmp_path / "blend.npz"
    res = poison("digits", "-a", "blend", "-t", "2", "--rate", "0.1", "--alpha", "0.2", "--mode", "append",
                 "--limit", "200", "-o", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    poisoned, _, info = load_poison_truth(out)
    assert poisoned.shape == (220,) and int(poisoned[200:].sum()) == 20
    assert info["trigger"]["alpha"] == 0.2 and info["params"]["mode"] == "append"


def test_clean_label_needs_and_uses_a_surrogate(tmp_path):
    out = tmp_path / "cl.npz"
    res = poison("digits", "-a", "clean-label", "-t", "1", "--rate", "0.25", "--model", "zoo:digits-cnn",
                 "--epsilon", "0.1", "--steps", "5", "--size", "3", "--position", "0,0",
                 "-o", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    train = load_digits("train")
    ds = load_dataset(f"npz:{out}")
    poisoned, _, info = load_poison_truth(out)
    assert torch.equal(ds.y, train.y) and int(poisoned.sum()) == round(0.25 * int((train.y == 1).sum()))
    rest = ds.x[poisoned].clone()
    rest[:, :, :3, :3] = train.x[poisoned][:, :, :3, :3]  # outside the 3x3 patch: the PGD perturbation only
    assert float((rest - train.x[poisoned]).abs().max()) <= 0.1 + 1e-6
    assert info["trigger"]["position"] == [0, 0] and info["params"]["epsilon"] == 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "clean-label", "-t", "0"], "--model"),
        (["-a", "label-flip", "--model", "zoo:digits-cnn"], "clean-label only"),
        (["-a", "badnets"], "needs option(s) target"),
        (["-a", "badnets", "-t", "0", "--alpha", "0.3"], "it takes"),
        (["-a", "badnets", "-t", "0", "--size", "9"], "does not fit"),
        (["-a", "badnets", "-t", "10"], "not a class"),
        (["-a", "badnets", "-t", "0", "--rate", "1.5"], "rate"),
        (["-a", "badnets", "-t", "0", "--position", "a,b"], "ROW,COL"),
        (["-a", "magic"], "use one of"),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "p.npz"
    res = poison("digits", *args, "--out", str(out))
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.stderr.split())  # rich may wrap long lines
    assert not out.exists()


def test_out_must_be_npz_and_help_teaches(tmp_path):
    res = poison("digits", "-t", "0", "--out", str(tmp_path / "p.pt"))
    assert res.exit_code == 2 and ".npz" in res.output
    text = poison("--help").output
    for word in ("Example", "--rate", "--target", "clean-label", "npz:"):
        assert word in text
