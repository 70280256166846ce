"""Merkle tree: known roots computed by hand, promotion (not duplication) of odd nodes, proofs."""

from __future__ import annotations

import hashlib

import pytest

from bastion.errors import DataError
from bastion.provenance import merkle_proof, merkle_root, verify_merkle_proof


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


LEAVES = [h(bytes([i])) for i in range(9)]


def test_known_roots():
    a, b, c, d, e = LEAVES[:5]
    assert merkle_root([]) == h(b"")
    assert merkle_root([a]) == a
    assert merkle_root([a, b]) == node(a, b)
    assert merkle_root([a, b, c]) == node(node(a, b), c)  # c promoted, not paired with itself
    assert merkle_root([a, b, c, d]) == node(node(a, b), node(c, d))
    assert merkle_root([a, b, c, d, e]) == node(node(node(a, b), node(c, d)), e)


def test_promotion_avoids_the_duplicate_leaf_collision():
    a, b, c = LEAVES[:3]
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_order_and_content_matter():
    assert merkle_root(LEAVES[:4]) != merkle_root([LEAVES[1], LEAVES[0], *LEAVES[2:4]])
    assert merkle_root(LEAVES[:4]) != merkle_root([*LEAVES[:3], LEAVES[5]])


@pytest.mark.parametrize("n", range(1, 10))
def test_every_proof_verifies_and_a_wrong_leaf_does_not(n):
    leaves = LEAVES[:n]
    root = merkle_root(leaves)
    for i in range(n):
        proof = merkle_proof(leaves, i)
        assert len(proof) <= max(1, (n - 1).bit_length())
        assert verify_merkle_proof(leaves[i], proof, root)
        assert not verify_merkle_proof(h(b"forged"), proof, root)


def test_bad_leaves_and_indices():
    with pytest.raises(DataError, match="32-byte"):
        merkle_root([b"short"])
    with pytest.raises(DataError, match="outside"):
        merkle_proof(LEAVES[:3], 3)
