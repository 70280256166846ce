"""``bastion data manifest|verify|drift``: files, exit codes, messages (verify once through the real entry
point, the rest in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_inproc import bastion
from test_cli import bastion as bastion_process

from bastion.data import load_npz
from bastion.provenance import build_manifest


@pytest.fixture()
def npz_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 6, 6), dtype=np.uint8)
    path = tmp_path / "data" / "d.npz"
    path.parent.mkdir()
    np.savez(path, x=x, y=np.arange(30) % 3)
    # Built in-process (one process start less); the command itself is run in the digits test below.
    manifest = build_manifest(load_npz(path), spec=f"npz:{path}").save(tmp_path / "m.json")
    return path, manifest, x


def test_manifest_then_verify_ok_then_one_changed_sample(npz_data, tmp_path):
    path, manifest, x = npz_data
    res = bastion_process("data", "verify", f"npz:{path}", str(manifest))
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout
    # Rewrite the file with one pixel of sample 21 changed (a valid archive, as an editor would save it).
    x2 = x.copy()
    x2[21, 2, 3] ^= 0x10
    np.savez(path, x=x2, y=np.arange(30) % 3)
    report_path = tmp_path / "v.json"
    res = bastion("data", "verify", f"npz:{path}", str(manifest), "--json", str(report_path))
    assert res.returncode == 1, res.stderr
    assert "MISMATCH" in res.stdout and "files changed (1): d.npz" in res.stdout
    assert "samples changed (1): 21 (pixels)" in res.stdout
    report = json.loads(report_path.read_text())
    assert report["ok"] is False and [c["index"] for c in report["changed"]] == [21]


def test_corrupted_archive_exits_1_naming_the_file(npz_data):
    path, manifest, x = npz_data
    raw = bytearray(path.read_bytes())
    raw[raw.find(x.tobytes()[:64]) + 100] ^= 0x01  # inside x's data: the archive's CRC check now fails
    path.write_bytes(bytes(raw))
    res = bastion("data", "verify", f"npz:{path}", str(manifest))
    assert res.returncode == 1, res.stderr
    assert "files changed (1): d.npz" in res.stdout and "did not load" in res.stdout


def test_many_changes_are_listed_then_counted(tmp_path):
    manifest = tmp_path / "m.json"
    res = bastion("data", "manifest", "digits", "--split", "test", "--out", str(manifest))
    assert res.returncode == 0, res.stderr
    assert "450 samples" in res.stdout and "Merkle root" in res.stdout
    data = json.loads(manifest.read_text())
    assert data["data"]["split"] == "test" and data["data"]["n_samples"] == 450
    res = bastion("data", "verify", "digits", str(manifest), "--split", "train", "--show", "3")
    assert res.returncode == 1
    assert "... and" in res.stdout and "more" in res.stdout


def test_unusable_manifest_exits_2(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('{"format": "bastion.manifest", "version": 7}')
    res = bastion("data", "verify", "digits", str(bad))
    assert res.returncode == 2 and "version 7 is not supported" in res.stderr


def test_drift_verdicts_and_exit_codes(tmp_path):
    res = bastion("data", "drift", "digits", "digits", "--model", "zoo:digits-mlp")
    assert res.returncode == 0, res.stderr
    assert "verdict: no drift" in res.stdout and "penultimate embeddings" in res.stdout
    ds_x = np.loadtxt(_digits_csv(), delimiter=",")[:300, :-1].reshape(-1, 8, 8) / 16.0
    shifted = tmp_path / "bright.npz"
    np.savez(shifted, x=np.clip(ds_x + 0.3, 0, 1).astype(np.float32), y=np.zeros(300, np.int64))
    out = tmp_path / "d.json"
    res = bastion("data", "drift", "digits", f"npz:{shifted}", "--json", str(out))
    assert res.returncode == 1, res.stderr
    assert "verdict: drift" in res.stdout
    report = json.loads(out.read_text())
    assert report["verdict"] == "drift" and report["mmd_space"] == "inputs"
    assert report["top_features"][0]["mean_current"] > report["top_features"][0]["mean_reference"]


def _digits_csv():
    from bastion.data.digits import _sklearn_digits_csv

    path = _sklearn_digits_csv()
    if path is None:
        pytest.skip("scikit-learn's digits.csv.gz not found")
    return path


def test_help_teaches():
    from typer.testing import CliRunner

    from bastion.cli.app import app
    from bastion.cli.data_cmd import data_app  # registers `data` on the app

    assert data_app is not None
    for command in ("manifest", "verify", "drift"):
        res = CliRunner().invoke(app, ["data", command, "--help"], terminal_width=200)
        assert res.exit_code == 0 and "Example" in res.output and f"bastion data {command}" in res.output
        assert "Exit code" in res.output or command == "manifest"


def test_relative_data_paths_give_the_same_manifest_from_any_working_directory(tmp_path):
    """A multi-file dataset named by a relative path: manifest and verify work, and a manifest made
    from the absolute path verifies against the relative one (no false "files removed")."""
    data = tmp_path / "shared" / "cifar"
    data.mkdir(parents=True)
    rng = np.random.default_rng(1)
    np.savez(
        data / "cifar10_test.npz",
        x=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
        y=np.arange(12) % 10,
    )
    work = tmp_path / "project" / "sub"
    work.mkdir(parents=True)
    relative = "cifar10:../../shared/cifar"
    res = bastion("data", "manifest", relative, "--split", "test", "--out", "rel.json", cwd=work)
    assert res.returncode == 0, res.stderr
    absolute = tmp_path / "abs.json"
    res = bastion("data", "manifest", f"cifar10:{data}", "--split", "test", "--out", str(absolute))
    assert res.returncode == 0, res.stderr
    rel_files = json.loads((work / "rel.json").read_text())["files"]
    assert rel_files == json.loads(absolute.read_text())["files"]
    assert [f["name"] for f in rel_files] == ["cifar10_test.npz"]
    for manifest in ("rel.json", str(absolute)):
        res = bastion("data", "verify", relative, manifest, cwd=work)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "OK" in res.stdout
    res = bastion("data", "verify", f"cifar10:{data}", str(work / "rel.json"))
    assert res.returncode == 0, res.stdout + res.stderr
