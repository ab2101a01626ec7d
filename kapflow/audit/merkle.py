"""A Merkle tree over an append-only log, in the form of RFC 9162 (Certificate Transparency 2.0), section 2.1.

The first part of the audit log that holds against an insider (issue 16): a log's entries are hashed
as leaves (``HASH(0x00 || entry)``), nodes as ``HASH(0x01 || left || right)``, and a tree of ``n``
leaves splits at the largest power of two smaller than ``n``. A tree head (its size and root hash)
commits to every entry before it; an inclusion proof shows one entry is in it, and a consistency
proof shows a later tree head extends an earlier one: nothing was removed or changed, only appended.

Pure functions over leaf hashes (32 bytes each, SHA-256), checked against the RFC's algorithms and
the published test vectors; the log that feeds them and signs its heads comes next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: the hash of the empty string (RFC 9162, 2.1.1)."""


def leaf_hash(entry: bytes) -> bytes:
    """The hash of one log entry as a leaf: ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of ``leaves`` (leaf hashes, in log order)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up, pairing neighbours; a last odd node is carried up unchanged. This builds the same tree as
    # the RFC's recursive definition (left subtrees are perfect), in linear time.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (RFC 9162, 2.1.3.1), bottom first."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    return _path(index, leaves)


def _path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, leaves[:k]), root(leaves[k:])]
    return [*_path(m - k, leaves[k:]), root(leaves[:k])]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of ``size`` with
    ``expected_root`` (RFC 9162, 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected_root


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of the first ``old_size`` leaves is a prefix of the tree of ``leaves``
    (RFC 9162, 2.1.4.1)."""
    if not 0 < old_size <= len(leaves):
        raise ValueError(f"no consistency proof from a tree of {old_size} to one of {len(leaves)}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree (``old_size``, ``old_root``) is a prefix of (``new_size``,
    ``new_root``) (RFC 9162, 2.1.4.2)."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node of the path
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


# ---------------------------------------------------------------- a tree kept as its perfect subtrees
#
# A log of millions of entries cannot be held in memory to answer a proof. Every hash a proof or a tree
# head needs is the root of a range of leaves that the RFC's split builds, and every such range is a run
# of *perfect* subtrees: ``2**level`` leaves starting at a multiple of ``2**level``. A store keeps each
# perfect subtree's hash once, as ``(level, index)``, when its last leaf is appended (about two per leaf),
# and answers any tree head or proof from O(log n) of them.

Node = tuple[int, int]
"""A perfect subtree: ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``."""


def perfect_parts(start: int, end: int) -> list[Node]:
    """The perfect subtrees whose right fold is the root of leaves ``[start, end)``, left to right.

    ``start`` must be a multiple of the largest power of two not below ``end - start`` (true of every
    range the RFC's split makes); the parts are the binary digits of the range's size, largest first.
    """
    parts: list[Node] = []
    size = end - start
    while size:
        level = size.bit_length() - 1
        parts.append((level, start >> level))
        start += 1 << level
        size -= 1 << level
    return parts


def fold(hashes: Sequence[bytes]) -> bytes:
    """The root of consecutive perfect subtrees, largest first: ``H(a, H(b, H(c, ...)))``."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make leaf ``index``'s audit path in a tree of ``size``, bottom first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make the consistency proof from ``old_size`` to ``new_size``, in order."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from a tree of {old_size} to one of {new_size}")
    ranges: list[tuple[int, int]] = []
    start, end, complete = 0, new_size, True
    m = old_size
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        ranges.append((start, end))
    return ranges[::-1]


def ranges_nodes(ranges: Sequence[tuple[int, int]]) -> set[Node]:
    """Every perfect subtree the roots of ``ranges`` need: what a store reads to answer a proof."""
    return {node for start, end in ranges for node in perfect_parts(start, end)}


def range_root(start: int, end: int, nodes: Mapping[Node, bytes]) -> bytes:
    """The root of leaves ``[start, end)`` from the stored perfect subtrees (``KeyError`` if one is missing)."""
    return fold([nodes[part] for part in perfect_parts(start, end)])


class CompactRange:
    """A tree grown one leaf at a time holding only its right edge: one perfect subtree per level at most.

    Verification streams millions of leaves through it and asks for the root at each checkpoint's size;
    the sequencer feeds it the new leaves and stores every perfect subtree it completes.
    """

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()) -> None:
        """A tree of ``size`` leaves whose right edge is ``edge``: the roots of ``perfect_parts(0, size)``."""
        if len(edge) != bin(size).count("1"):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} edge subtrees, not {len(edge)}")
        self.size = size
        self._edge = list(edge)  # largest first, as perfect_parts(0, size)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; returns the perfect subtrees it completed (the leaf itself first)."""
        index = self.size
        made: list[tuple[Node, bytes]] = [((0, index), leaf)]
        current, level = leaf, 0
        while index & 1:  # each trailing one bit is a left sibling of the same size waiting on the edge
            current = node_hash(self._edge.pop(), current)
            level, index = level + 1, index >> 1
            made.append(((level, index), current))
        self._edge.append(current)
        self.size += 1
        return made

    def root(self) -> bytes:
        return fold(self._edge)
