"""Manifests: byte-exact hashes (computed independently here), determinism, files, JSON round trip,
refusal of malformed or edited manifests, and the full MNIST training set in under 10 seconds."""

from __future__ import annotations

import hashlib
import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.data import Dataset, load_dataset, load_npz
from bastion.errors import DataError
from bastion.provenance import build_manifest, load_manifest, verify

MNIST = Path(__file__).resolve().parents[4] / "shared" / "data" / "mnist"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tiny() -> Dataset:
    x = torch.tensor([[0.0, 0.5], [1.0, 0.25], [0.125, 0.75]]).reshape(3, 1, 1, 2)
    return Dataset(x, torch.tensor([1, 0, 1]), num_classes=2, name="tiny")


def test_known_answer_for_a_tiny_dataset():
    m = build_manifest(tiny(), files={})
    rows = [(0.0, 0.5, 1), (1.0, 0.25, 0), (0.125, 0.75, 1)]
    inputs = [sha(struct.pack("<2f", a, b)) for a, b, _ in rows]
    leaves = [sha(b"\x00" + h + struct.pack("<q", y)) for h, (_, _, y) in zip(inputs, rows, strict=True)]
    root = sha(b"\x01" + sha(b"\x01" + leaves[0] + leaves[1]) + leaves[2])  # third leaf promoted
    assert m.input_sha256 == tuple(h.hex() for h in inputs)
    assert m.labels == (1, 0, 1) and m.class_counts == (1, 2)
    assert m.merkle_root == root.hex()
    assert m.shape == (1, 1, 2) and m.dtype == "float32" and m.n_samples == 3


def test_deterministic_and_sensitive_to_one_pixel_and_one_label():
    ds = load_dataset("digits", split="test")
    a, b = build_manifest(ds, spec="digits"), build_manifest(ds, spec="digits")
    assert a.merkle_root == b.merkle_root and a.input_sha256 == b.input_sha256
    x = ds.x.clone()
    x[7, 0, 2, 2] = x[7, 0, 2, 2] + 1 / 16
    y = ds.y.clone()
    y[9] = (y[9] + 1) % 10
    pixel = build_manifest(Dataset(x, ds.y, 10), files={})
    label = build_manifest(Dataset(ds.x, y, 10), files={})
    assert pixel.merkle_root != a.merkle_root and label.merkle_root != a.merkle_root
    assert [i for i in range(len(ds)) if pixel.input_sha256[i] != a.input_sha256[i]] == [7]
    assert label.input_sha256 == a.input_sha256 and label.labels[9] != a.labels[9]
    assert torch.equal(ds.x, load_dataset("digits", split="test").x)  # the caller's data is untouched


def test_records_source_files_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.integers(0, 256, (12, 4, 4), dtype=np.uint8), y=np.arange(12) % 3)
    m = build_manifest(load_npz(path), spec=f"npz:{path}")
    assert [(f.name, f.size, f.sha256) for f in m.files] == [
        ("d.npz", path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    ]
    saved = m.save(tmp_path / "out" / "m.json")
    again = load_manifest(saved)
    assert again == m and again.spec == f"npz:{path}" and again.created.endswith("+00:00")
    raw = json.loads(saved.read_text())
    assert raw["format"] == "bastion.manifest" and raw["version"] == 1
    assert raw["data"]["class_counts"] == {"0": 4, "1": 4, "2": 4}


def _edit(path: Path, change) -> Path:
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(version=2), "version 2 is not supported"),
        (lambda r: r.update(format="other"), "not a bastion manifest"),
        (lambda r: r.pop("samples"), "missing field manifest.samples"),
        (lambda r: r["data"].update(shape="28x28"), "wrong type"),
        (lambda r: r["samples"]["input_sha256"].__setitem__(0, "0" * 64), "Merkle root does not match"),
        (lambda r: r["samples"].update(labels=[1, 0, 2, 0, 1, 2]), "Merkle root does not match"),
        (lambda r: r["samples"]["labels"].__setitem__(1, 9), r"labels must lie in \[0, 3\)"),
        (lambda r: r["samples"]["input_sha256"].__setitem__(0, "zz"), "64-character"),
        (lambda r: r["data"]["class_counts"].update({"0": 5}), "class_counts disagree"),
    ],
)
def test_malformed_or_edited_manifests_are_refused(tmp_path, change, message):
    ds = Dataset(torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2]), num_classes=3)
    path = build_manifest(ds, files={}).save(tmp_path / "m.json")
    with pytest.raises(DataError, match=message):
        load_manifest(_edit(path, change))


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_manifest(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not a JSON manifest"):
        load_manifest(tmp_path / "bad.json")
    with pytest.raises(DataError, match="not found"):
        build_manifest(tiny(), files={"gone.bin": tmp_path / "gone.bin"})


def test_full_mnist_training_set_under_ten_seconds():
    if not MNIST.is_dir():
        pytest.skip(f"shared data not present at {MNIST}")
    start = time.perf_counter()
    ds = load_dataset(f"mnist:{MNIST}", split="train")
    m = build_manifest(ds, spec=f"mnist:{MNIST}")
    seconds = time.perf_counter() - start
    assert m.n_samples == 60_000 and len(m.files) == 2
    assert m.class_counts == (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
    assert seconds < 10.0, f"load + manifest of MNIST train took {seconds:.1f} s"
    # One pixel of one image changed in memory: verify names exactly that image.
    x = ds.x.clone()
    x[31_337, 0, 14, 14] = 1.0 - x[31_337, 0, 14, 14]
    report = verify(Dataset(x, ds.y, 10, meta=ds.meta), m)
    assert report.files_ok and not report.ok
    assert [(c.index, c.input, c.label_before == c.label_after) for c in report.changed] == [
        (31_337, True, True)
    ]
    assert not (report.added or report.removed or report.moved)


@pytest.mark.parametrize("listed", ["prefixed", "bare"])
def test_source_files_are_named_relative_to_the_data_root_from_any_working_directory(
    tmp_path, monkeypatch, listed
):
    from bastion.provenance import source_files

    root = tmp_path / "data" / "set"
    root.mkdir(parents=True)
    (root / "a.bin").write_bytes(b"a")
    work = tmp_path / "w1" / "w2"  # as deep as the data's parent: a doubled path would exist too
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    rel = Path("../../data/set")
    # Loaders record either paths that start with the root (idx, cifar10) or names under it (folder).
    files = [str(rel / "a.bin")] if listed == "prefixed" else ["a.bin"]
    ds = Dataset(
        torch.zeros(2, 1), torch.tensor([0, 1]), num_classes=2, meta={"path": str(rel), "files": files}
    )
    found = source_files(ds)
    assert list(found) == ["a.bin"]
    assert found["a.bin"].resolve() == (root / "a.bin").resolve() and found["a.bin"].is_file()
