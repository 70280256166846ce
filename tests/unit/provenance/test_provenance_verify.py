"""verify names exactly what changed: one pixel, one label, added / removed / reordered samples, and a
flipped byte in an .npz file (both the file and the sample it lands in)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.data import Dataset, load_npz
from bastion.provenance import build_manifest, verify, verify_files


@pytest.fixture(scope="module")
def base() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 1, 4, 4), generator=g).float() / 255
    return Dataset(x, torch.arange(40) % 4, num_classes=4, name="synthetic")


def edited(ds: Dataset, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> Dataset:
    return Dataset(ds.x if x is None else x, ds.y if y is None else y, ds.num_classes, name=ds.name)


def test_unchanged_data_is_ok(base):
    m = build_manifest(base, files={})
    report = verify(base, m, files={})
    assert report.ok and report.merkle_root_found == m.merkle_root
    # A float64 copy of float32 data hashes in the manifest's dtype, so it still verifies.
    assert verify(edited(base, x=base.x.double()), m, files={}).ok


def test_one_changed_pixel_names_exactly_that_sample(base):
    m = build_manifest(base, files={})
    x = base.x.clone()
    x[17, 0, 1, 2] += 1 / 255
    report = verify(edited(base, x=x), m, files={})
    assert not report.ok
    assert [(c.index, c.input, c.label_before, c.label_after) for c in report.changed] == [(17, True, 1, 1)]
    assert report.added == report.removed == report.moved == () and report.class_counts == ()


def test_one_changed_label_names_the_sample_and_the_class_counts(base):
    m = build_manifest(base, files={})
    y = base.y.clone()
    y[6] = 0  # was 2
    report = verify(edited(base, y=y), m, files={})
    assert [(c.index, c.input, c.label_before, c.label_after) for c in report.changed] == [(6, False, 2, 0)]
    assert report.class_counts == (("0", 10, 11), ("2", 10, 9))


def test_removed_sample_is_one_removal_not_a_shift(base):
    m = build_manifest(base, files={})
    keep = torch.tensor([i for i in range(40) if i != 12])
    report = verify(base.subset(keep), m, files={})
    assert report.removed == (12,) and report.changed == () and report.added == ()
    assert report.moved == tuple((i + 1, i) for i in range(12, 39))
    assert (report.n_expected, report.n_found) == (40, 39)


def test_added_samples_appended_and_inserted(base):
    m = build_manifest(base, files={})
    new = torch.full((2, 1, 4, 4), 0.5)
    appended = Dataset(torch.cat([base.x, new]), torch.cat([base.y, torch.tensor([0, 1])]), 4)
    report = verify(appended, m, files={})
    assert report.added == (40, 41) and report.removed == () and report.moved == ()
    inserted = Dataset(
        torch.cat([base.x[:5], new[:1], base.x[5:]]),
        torch.cat([base.y[:5], torch.tensor([3]), base.y[5:]]),
        4,
    )
    report = verify(inserted, m, files={})
    assert report.added == (5,) and report.removed == () and report.changed == ()


def test_reordering_is_a_mismatch_reported_as_moves(base):
    m = build_manifest(base, files={})
    order = torch.arange(40)
    order[[3, 30]] = order[[30, 3]]
    report = verify(base.subset(order), m, files={})
    assert not report.ok and report.changed == () and report.added == report.removed == ()
    assert sorted(report.moved) == [(3, 30), (30, 3)]


def test_shape_change_is_reported(base):
    m = build_manifest(base, files={})
    report = verify(Dataset(base.x.reshape(40, 16), base.y, 4), m, files={})
    assert not report.ok and any("shape" in line for line in report.metadata)


def _flip_in_member(src: Path, dst: Path, member: str, offset: int) -> None:
    """Rewrite the archive with one byte of ``member`` flipped and valid CRCs, as an editor would."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = bytearray(zin.read(info))
            if info.filename == member:
                data[offset] ^= 0x01
            zout.writestr(info, bytes(data))


def test_flipped_byte_in_npz_names_the_file_and_the_sample(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 4, 4), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.arange(10) % 2)
    m = build_manifest(load_npz(path))
    header = len(zipfile.ZipFile(path).read("x.npy")) - x.nbytes
    sample, pixel = 6, 9
    tampered = tmp_path / "t" / "d.npz"
    tampered.parent.mkdir()
    _flip_in_member(path, tampered, "x.npy", header + sample * 16 + pixel)
    report = verify(load_npz(tampered), m)
    assert report.changed_files == ("d.npz",) and report.added_files == report.removed_files == ()
    assert [(c.index, c.input) for c in report.changed] == [(sample, True)]


def test_flipped_byte_breaking_the_archive_still_shows_in_the_file_hash(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(160, dtype=np.uint8).reshape(10, 4, 4), y=np.arange(10) % 2)
    m = build_manifest(load_npz(path))
    raw = bytearray(path.read_bytes())
    raw[raw.find(bytes(range(40, 50))) + 3] ^= 0x01  # inside x's data: the zip CRC no longer matches
    path.write_bytes(bytes(raw))
    assert verify_files(m, {"d.npz": path}) == {"changed": ("d.npz",), "added": (), "removed": ()}
    assert verify_files(m, {}) == {"changed": (), "added": (), "removed": ("d.npz",)}
