"""A Merkle tree over hex SHA-256 receipts, with inclusion proofs (no Django).

Leaves are the receipts sorted ascending. Leaf hash = SHA-256(0x00 || receipt bytes); node hash =
SHA-256(0x01 || left || right), as in RFC 6962, so a leaf can never pass for a node. A level with an
odd count carries its last hash up unchanged. The root of no leaves is SHA-256 of the empty string.
"""

from __future__ import annotations

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def _leaf(receipt: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(receipt)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(receipts: list[str]) -> list[list[bytes]]:
    level = [_leaf(r) for r in sorted(receipts)]
    levels = [level]
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(receipts: list[str]) -> str:
    """The hex root of the receipts (order does not matter)."""
    if not receipts:
        return EMPTY_ROOT
    return _levels(receipts)[-1][0].hex()


def inclusion_proof(receipts: list[str], receipt: str) -> list[dict[str, str]]:
    """Sibling hashes from the leaf up: [{"side": "left"|"right", "hash": hex}, ...]."""
    ordered = sorted(receipts)
    index = ordered.index(receipt)  # ValueError when absent: there is no proof to give
    proof: list[dict[str, str]] = []
    for level in _levels(ordered)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append({"side": "left" if sibling < index else "right", "hash": level[sibling].hex()})
        index //= 2
    return proof


def verify_inclusion(receipt: str, proof: list[dict[str, str]], root: str) -> bool:
    """True when `proof` leads from `receipt` to `root`."""
    try:
        acc = _leaf(receipt)
        for step in proof:
            sibling = bytes.fromhex(step["hash"])
            if step["side"] == "left":
                acc = _node(sibling, acc)
            elif step["side"] == "right":
                acc = _node(acc, sibling)
            else:
                return False
    except (ValueError, KeyError, TypeError):
        return False
    return acc.hex() == root
