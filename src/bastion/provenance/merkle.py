"""A binary Merkle tree of sha256 over a dataset's sample leaves, with inclusion proofs.

The construction follows RFC 6962 (Certificate Transparency), section 2.1, in its iterative form:

- an internal node is ``sha256(0x01 || left || right)``; the leaves are 32-byte digests given by the
  caller (a manifest's sample leaves are ``sha256(0x00 || ...)``, see :mod:`bastion.provenance.hashing`),
  so the 0x00 / 0x01 prefixes keep a leaf from ever being passed off as an internal node;
- a level with an odd number of nodes **promotes** its last node unchanged to the next level. Bitcoin's
  alternative, duplicating it, gives ``[a, b, c]`` and ``[a, b, c, c]`` the same root (CVE-2012-2459);
  promotion does not;
- the root of no leaves is ``sha256(b"")``; the root of one leaf is that leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from bastion.errors import DataError

__all__ = ["EMPTY_ROOT", "merkle_proof", "merkle_root", "verify_merkle_proof"]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_NODE = b"\x01"

Side = Literal["left", "right"]


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    parents = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        parents.append(level[-1])  # promoted, not duplicated
    return parents


def _check_leaves(leaves: Sequence[bytes]) -> None:
    if any(len(leaf) != 32 for leaf in leaves):
        raise DataError("Merkle leaves must be 32-byte sha256 digests (use bytes.fromhex on hex strings)")


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The 32-byte root over ``leaves`` (32-byte digests, in order). Costs ``len(leaves) - 1`` hashes."""
    _check_leaves(leaves)
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[tuple[Side, bytes]]:
    """The audit path of leaf ``index``: ``(side, sibling)`` pairs from the leaf up to the root.

    ``side`` says where the sibling sits. Levels where the node was promoted contribute nothing. With
    the path and the root, anyone can check that one sample belongs to a dataset without its other
    samples (:func:`verify_merkle_proof`); the path has at most ``ceil(log2(n))`` entries.
    """
    _check_leaves(leaves)
    if not 0 <= index < len(leaves):
        raise DataError(f"leaf index {index} is outside [0, {len(leaves)})")
    proof: list[tuple[Side, bytes]] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(("left" if sibling < index else "right", level[sibling]))
        level = _next_level(level)
        index //= 2
    return proof


def verify_merkle_proof(leaf: bytes, proof: Sequence[tuple[Side, bytes]], root: bytes) -> bool:
    """True when folding ``leaf`` with ``proof`` (from :func:`merkle_proof`) gives ``root``."""
    node = leaf
    for side, sibling in proof:
        if side not in ("left", "right"):
            raise DataError(f"proof sides are 'left' or 'right', got {side!r}")
        node = _node(sibling, node) if side == "left" else _node(node, sibling)
    return node == root
