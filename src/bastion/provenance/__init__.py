"""Dataset provenance: manifests that pin every byte, tamper checks that name what changed, drift tests.

- :func:`build_manifest` hashes a dataset (per file, per sample, a Merkle root) into a :class:`Manifest`;
  ``Manifest.save`` / :func:`load_manifest` write and read its versioned JSON.
- :func:`verify` names the files and samples (index, pixels or label) that changed, were added or removed.
- :func:`drift_test` compares two datasets: per-feature KS tests (Benjamini–Hochberg) and an MMD test on
  a model's embeddings, with a verdict.
"""

from __future__ import annotations

from bastion.provenance.drift import DriftReport, FeatureDrift, drift_test
from bastion.provenance.hashing import source_files
from bastion.provenance.manifest import FileRecord, Manifest, build_manifest
from bastion.provenance.manifest_json import load_manifest
from bastion.provenance.merkle import merkle_proof, merkle_root, verify_merkle_proof
from bastion.provenance.mmd import MMDResult, mmd_test
from bastion.provenance.verify import SampleChange, VerifyReport, verify, verify_files

__all__ = [
    "DriftReport",
    "FeatureDrift",
    "FileRecord",
    "MMDResult",
    "Manifest",
    "SampleChange",
    "VerifyReport",
    "build_manifest",
    "drift_test",
    "load_manifest",
    "merkle_proof",
    "merkle_root",
    "mmd_test",
    "source_files",
    "verify",
    "verify_files",
    "verify_merkle_proof",
]
